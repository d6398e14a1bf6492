// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * One program per explicit attach call, each counting what one thread does,
 * with no target in its section (libbpf cannot attach them on its own), so
 * a test names the target and sees the counter move only while attached:
 * a tracepoint and a raw tracepoint (raw_syscalls:sys_enter / sys_enter),
 * a kprobe and a kretprobe (do_faccessat), a cgroup socket hook
 * (cgroup/sock_create, every socket made in the cgroup) and a task iterator.
 */
#include "../test_types.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The thread whose calls count (its kernel tid). */
const volatile __u32 target_tid = 0;

__u64 tracepoint_hits;
__u64 raw_tracepoint_hits;
__u64 kprobe_hits;
__u64 kretprobe_hits;
__u64 sockets_created;
__u64 tasks_seen;

static bool is_target(void)
{
	return (__u32)bpf_get_current_pid_tgid() == target_tid;
}

SEC("tracepoint")
int count_tracepoint(void *ctx)
{
	if (is_target())
		__sync_fetch_and_add(&tracepoint_hits, 1);
	return 0;
}

SEC("raw_tracepoint")
int count_raw_tracepoint(void *ctx)
{
	if (is_target())
		__sync_fetch_and_add(&raw_tracepoint_hits, 1);
	return 0;
}

SEC("kprobe")
int count_kprobe(void *ctx)
{
	if (is_target())
		__sync_fetch_and_add(&kprobe_hits, 1);
	return 0;
}

SEC("kretprobe")
int count_kretprobe(void *ctx)
{
	if (is_target())
		__sync_fetch_and_add(&kretprobe_hits, 1);
	return 0;
}

struct bpf_sock;

SEC("cgroup/sock_create")
int count_socket(struct bpf_sock *sk)
{
	__sync_fetch_and_add(&sockets_created, 1);
	return 1; /* allow */
}

struct seq_file;
struct bpf_iter_meta {
	struct seq_file *seq;
	__u64 seq_num;
} __attribute__((preserve_access_index));
struct task_struct;
struct bpf_iter__task {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
} __attribute__((preserve_access_index));

SEC("iter/task")
int count_tasks(struct bpf_iter__task *ctx)
{
	if (ctx->task)
		__sync_fetch_and_add(&tasks_seen, 1);
	return 0;
}
