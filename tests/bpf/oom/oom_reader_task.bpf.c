// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A bpf_oom_ops policy reading another task's memory with the
 * bpf_copy_from_user_task() helper.  It goes through access_process_vm(),
 * which takes the target mm's mmap_lock and faults pages in whatever
 * pagefault_disable() says, while the target may be the task whose fault is
 * charging: refused at load (issue 22, defect 3; the kfuncs reading another
 * task's memory, bpf_copy_from_user_task_str() and the dynptr ones, too).
 */
#include "bpfoom_kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

__s32 target_pid;
__u64 target_addr;
__s32 task_ret = 1;
char task_bytes[16];

SEC("struct_ops.s/handle_out_of_memory")
int BPF_PROG(task_reader_oom, struct bpf_oom_ctx *oom_ctx, struct oom_control *oc)
{
	struct task_struct *task;

	task = bpf_task_from_pid(target_pid);
	if (!task)
		return 0;
	task_ret = bpf_copy_from_user_task(task_bytes, sizeof(task_bytes), (void *)target_addr,
					   task, 0);
	bpf_task_release(task);
	return 0;
}

SEC(".struct_ops.link")
struct bpf_oom_ops task_reader_policy = {
	.handle_out_of_memory = (void *)task_reader_oom,
	.name = "bpfoom_task_reader",
};
