// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A policy of your own, written against the headers bpfoom ships
 * (bpfoom.get_include(): bpfoom's and libbpf's <bpf/...>):
 *
 *   clang -g -O2 -target bpf -I "$(python3 -c 'import bpfoom; print(bpfoom.get_include())')" \
 *         -c adjusted_task.bpf.c -o adjusted_task.bpf.o
 *   BPFOOM_POLICY_PATH=$PWD bpfoom policies        # lists it, with its tunables
 *   BPFOOM_POLICY_PATH=$PWD bpfoom attach adjusted_task --set adj_unit_bytes=1048576
 *
 * It reuses the shipped task walker (policy_tasks.h), ranking each task by its
 * memory plus oom_score_adj times adj_unit_bytes.
 */
#include "bpfoom_kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "policy_meta.h"

#define POLICY_NAME "adjusted_task"
#define POLICY_REASON REASON_LARGEST_TASK
#define POLICY_DEFAULT_GRANULARITY GRANULARITY_TASK
#define POLICY_KILL_MESSAGE "adjusted_task"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

BPFOOM_DESCRIPTION("kill the task with the most memory, each oom_score_adj point counting "
		   "as adj_unit_bytes more (or less)");

__u64 adj_unit_bytes = 4 << 20;
BPFOOM_TUNABLE_RANGE(adj_unit_bytes, 0, 1 << 30, "bytes one oom_score_adj point is worth");
__u64 min_victim_bytes = 0;
BPFOOM_TUNABLE(min_victim_bytes, "ignore tasks using less memory than this (bytes)");
const volatile bool count_swap = true;
BPFOOM_TUNABLE(count_swap, "count swapped-out pages as the task's memory");
__u64 victim_wait_ms = 5000;
BPFOOM_TUNABLE_RANGE(victim_wait_ms, 100, 60000, "how long (ms) a victim may take to exit");

#include "policy_event.h"
#include "policy_scope.h"
#include "policy_leaves.h"
#include "policy_kill.h"
#include "policy_granularity.h"
#include "policy_tasks.h"

static __u64 task_rank(struct task_struct *task, __u64 memory)
{
	__s64 adjusted = memory + (__s64)task->signal->oom_score_adj * (__s64)adj_unit_bytes;

	return adjusted > 0 ? adjusted : 1;	/* still a candidate, ranked last */
}

SEC("struct_ops.s/handle_out_of_memory")
int BPF_PROG(adjusted_task_oom, struct bpf_oom_ctx *oom_ctx, struct oom_control *oc)
{
	return handle_oom(oom_ctx, oc);
}

SEC(".struct_ops.link")
struct bpf_oom_ops adjusted_task = {
	.handle_out_of_memory = (void *)adjusted_task_oom,
	.name = "adjusted_task",
};
