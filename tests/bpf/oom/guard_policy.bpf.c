// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A bpf_oom_ops policy for the kernel-guarantee tests (test_kernel_*.py): it
 * tries exactly what the test asks and records what the kernel answered, so
 * a test can prove what bpf_oom_kill_process() refuses and what a lying
 * policy can no longer do.
 *
 * `mode` (set by the test before the OOM):
 *   MODE_DECLINE     record the call, return 0
 *   MODE_KILL        kill `target_pid`; return 1 only if the kill worked
 *   MODE_KILL_CLAIM  kill `target_pid` and return 1 whatever happened (a
 *                    policy that "kills" a zombie and claims success)
 *   MODE_CLAIM       return 1 without killing anything
 *   MODE_KILL_TWICE  kill `target_pid`, then kill it again
 *   MODE_KILL_PASS   kill `target_pid` and return 0 whatever happened (the
 *                    walk goes on to the ancestors' and the system's policy)
 * Every kill attempt records its return value and whether
 * oc->bpf_memory_freed was set right after it.
 *
 * handle_cgroup_offline spins (bpf_loop) until the test sets `release` or
 * `spin_ns` elapsed, so a test can see whether the callback holds
 * cgroup_mutex (a mkdir elsewhere would wait for it).
 */
#include "bpfoom_kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

enum guard_mode {
	MODE_DECLINE = 0,
	MODE_KILL = 1,
	MODE_KILL_CLAIM = 2,
	MODE_CLAIM = 3,
	MODE_KILL_TWICE = 4,
	MODE_KILL_PASS = 5,
};

#define MAX_RECORDS 32

__u32 mode;
__s32 target_pid;
/* Kill with a message that tries to start a log record of its own. */
bool evil_message;

__u32 calls;
__u32 attempts;
__s32 rets[MAX_RECORDS];
bool freed_after[MAX_RECORDS];
__u32 kills;

/* handle_cgroup_offline */
__u64 spin_ns;
__u32 release;
__u32 offline_started;
__u32 offline_finished;
__u64 offline_id;

static void record(__s32 ret, struct oom_control *oc)
{
	__u32 slot = attempts;

	if (slot < MAX_RECORDS) {
		rets[slot] = ret;
		freed_after[slot] = oc->bpf_memory_freed;
	}
	attempts = slot + 1;
	if (!ret)
		kills++;
}

static int kill_target(struct oom_control *oc)
{
	struct task_struct *task;
	int ret;

	task = bpf_task_from_pid(target_pid);
	if (!task) {
		record(-3, oc); /* -ESRCH: no such pid at all */
		return -3;
	}
	if (evil_message)
		ret = bpf_oom_kill_process(oc, task, "bpfoom guard\nbpfoom-injected-record");
	else
		ret = bpf_oom_kill_process(oc, task, "bpfoom guard");
	record(ret, oc);
	if (mode == MODE_KILL_TWICE && !ret) {
		ret = bpf_oom_kill_process(oc, task, "bpfoom guard again");
		record(ret, oc);
		ret = 0;
	}
	bpf_task_release(task);
	return ret;
}

SEC("struct_ops.s/handle_out_of_memory")
int BPF_PROG(guard_oom, struct bpf_oom_ctx *oom_ctx, struct oom_control *oc)
{
	calls++;
	switch (mode) {
	case MODE_KILL:
	case MODE_KILL_TWICE:
		return kill_target(oc) == 0 ? 1 : 0;
	case MODE_KILL_CLAIM:
		kill_target(oc);
		return 1;
	case MODE_KILL_PASS:
		kill_target(oc);
		return 0;
	case MODE_CLAIM:
		return 1;
	default:
		return 0;
	}
}

static long spin_step(__u64 index, void *start)
{
	if (release || bpf_ktime_get_ns() - *(__u64 *)start > spin_ns)
		return 1;
	return 0;
}

static long spin_outer(__u64 index, void *start)
{
	bpf_loop(1 << 20, spin_step, start, 0);
	if (release || bpf_ktime_get_ns() - *(__u64 *)start > spin_ns)
		return 1;
	return 0;
}

SEC("struct_ops.s/handle_cgroup_offline")
void BPF_PROG(guard_offline, struct bpf_oom_ctx *oom_ctx, __u64 cgroup_id)
{
	__u64 start = bpf_ktime_get_ns();

	offline_id = cgroup_id;
	offline_started = 1;
	if (spin_ns)
		bpf_loop(1 << 16, spin_outer, &start, 0);
	offline_finished = 1;
}

SEC(".struct_ops.link")
struct bpf_oom_ops guard_policy = {
	.handle_out_of_memory = (void *)guard_oom,
	.handle_cgroup_offline = (void *)guard_offline,
	.name = "bpfoom_guard",
};
