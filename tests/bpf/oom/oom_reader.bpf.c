// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A bpf_oom_ops policy that reads user memory during the OOM, then kills
 * (test_kernel_user_memory.py): the allocating task's own memory at
 * `own_addr` (bpf_copy_from_user: current is the task whose charge failed)
 * and `target_pid`'s at `target_addr` (bpf_copy_from_user_task), then kills
 * `target_pid`.  Handlers are sleepable and may fault pages in while the
 * allocating context holds its locks: the kernel must neither deadlock nor
 * report a lock problem.
 */
#include "bpfoom_kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define READ_LEN 16

__s32 target_pid;
__u64 target_addr;
__u64 own_addr;

/* What each read returned (1: not tried) and what it read. */
__s32 own_ret = 1;
__s32 task_ret = 1;
char own_bytes[READ_LEN];
char task_bytes[READ_LEN];
__s32 kill_ret = 1;
__u32 calls;

SEC("struct_ops.s/handle_out_of_memory")
int BPF_PROG(reader_oom, struct bpf_oom_ctx *oom_ctx, struct oom_control *oc)
{
	struct task_struct *task;

	calls++;
	if (own_addr)
		own_ret = bpf_copy_from_user(own_bytes, sizeof(own_bytes), (void *)own_addr);
	task = bpf_task_from_pid(target_pid);
	if (!task)
		return 0;
	task_ret = bpf_copy_from_user_task(task_bytes, sizeof(task_bytes), (void *)target_addr,
					   task, 0);
	kill_ret = bpf_oom_kill_process(oc, task, "bpfoom reader");
	bpf_task_release(task);
	return kill_ret == 0;
}

SEC(".struct_ops.link")
struct bpf_oom_ops reader_policy = {
	.handle_out_of_memory = (void *)reader_oom,
	.name = "bpfoom_reader",
};
