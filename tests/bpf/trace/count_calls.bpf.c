// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Tracing programs that count what one thread does, so a test can attach
 * them through Program.attach and see them run (and stop once detached):
 * every system call it enters (tp_btf) and its faccessat calls (fentry).
 */
#include "../test_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The thread whose calls count (its kernel tid). */
const volatile __u32 target_tid = 0;

__u64 syscalls;
__u64 access_calls;

static bool is_target(void)
{
	return (__u32)bpf_get_current_pid_tgid() == target_tid;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(count_syscall)
{
	if (is_target())
		__sync_fetch_and_add(&syscalls, 1);
	return 0;
}

SEC("fentry/do_faccessat")
int BPF_PROG(count_access)
{
	if (is_target())
		__sync_fetch_and_add(&access_calls, 1);
	return 0;
}
