// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A bpf_oom_ops policy that reads user memory during the OOM, then kills
 * (test_kernel_user_memory.py).  Handlers run with page faults disabled
 * (issue 22, defect 3): the charge that failed may come from a page fault
 * holding current's mmap_lock.  So reading the allocating task's resident
 * memory at `own_addr` (bpf_copy_from_user: current is the task whose charge
 * failed) works, and reading a page it never touched, at `far_addr`, fails
 * with -EFAULT instead of faulting it in.  Then it kills `target_pid`.
 */
#include "bpfoom_kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define READ_LEN 16

__s32 target_pid;
__u64 own_addr;
__u64 far_addr;

/* What each read returned (1: not tried) and what it read. */
__s32 own_ret = 1;
__s32 far_ret = 1;
char own_bytes[READ_LEN];
char far_bytes[READ_LEN];
__s32 kill_ret = 1;
__u32 calls;

SEC("struct_ops.s/handle_out_of_memory")
int BPF_PROG(reader_oom, struct bpf_oom_ctx *oom_ctx, struct oom_control *oc)
{
	struct task_struct *task;

	calls++;
	if (own_addr)
		own_ret = bpf_copy_from_user(own_bytes, sizeof(own_bytes), (void *)own_addr);
	if (far_addr)
		far_ret = bpf_copy_from_user(far_bytes, sizeof(far_bytes), (void *)far_addr);
	task = bpf_task_from_pid(target_pid);
	if (!task)
		return 0;
	kill_ret = bpf_oom_kill_process(oc, task, "bpfoom reader");
	bpf_task_release(task);
	return kill_ret == 0;
}

SEC(".struct_ops.link")
struct bpf_oom_ops reader_policy = {
	.handle_out_of_memory = (void *)reader_oom,
	.name = "bpfoom_reader",
};
