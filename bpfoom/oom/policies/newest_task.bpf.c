// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * newest_task: what it does is its BPFOOM_DESCRIPTION below (`bpfoom policies`
 * shows it); the details:
 *
 * While its victim is still exiting the policy waits for it instead of
 * killing again (policy_kill.h).  A granularity setting on the task's
 * cgroup or an ancestor can widen the kill (policy_granularity.h).  In a system-wide OOM every task of the
 * machine is a candidate.
 */
#include "bpfoom_kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "policy_meta.h"
#include <bpf/bpf_core_read.h>

#define POLICY_NAME "newest_task"
#define POLICY_REASON REASON_NEWEST_TASK
#define POLICY_DEFAULT_GRANULARITY GRANULARITY_TASK
#define POLICY_KILL_MESSAGE "bpfoom newest_task"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

BPFOOM_DESCRIPTION("kill the most recently started task in the OOMing memcg that uses at least "
		   "min_victim_bytes, skipping kernel threads and tasks with oom_score_adj "
		   "-1000: the work lost is the least, and a runaway fork or a just-started job "
		   "is the usual culprit.");

__u64 min_victim_bytes = 0;
BPFOOM_TUNABLE_RANGE(min_victim_bytes, 0, 1ULL << 50,
		     "ignore tasks using less memory than this (bytes)");
const volatile bool count_swap = true;
BPFOOM_TUNABLE(count_swap,
	       "count swapped-out pages as the task's memory");
__u64 victim_wait_ms = 5000;
BPFOOM_TUNABLE_RANGE(victim_wait_ms, 0, 3600000,
		     "how long (ms) to wait for a victim to exit before choosing another");

#include "policy_event.h"
#include "policy_scope.h"
#include "policy_leaves.h"
#include "policy_kill.h"
#include "policy_granularity.h"
#include "policy_tasks.h"

static __u64 task_rank(struct task_struct *task, __u64 memory)
{
	return task->start_time;
}

SEC("struct_ops.s/handle_out_of_memory")
int BPF_PROG(newest_task_oom, struct bpf_oom_ctx *oom_ctx, struct oom_control *oc)
{
	return handle_oom(oom_ctx, oc);
}

SEC("struct_ops.s/handle_cgroup_offline")
void BPF_PROG(newest_task_offline, struct bpf_oom_ctx *oom_ctx, __u64 cgroup_id)
{
	event_cgroup_offline(oom_ctx->cgroup_id, cgroup_id);
}

SEC(".struct_ops.link")
struct bpf_oom_ops newest_task = {
	.handle_out_of_memory = (void *)newest_task_oom,
	.handle_cgroup_offline = (void *)newest_task_offline,
	.name = "newest_task",
};
