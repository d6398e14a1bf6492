// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The reference policy of spec section 6: on an OOM, kill every task of the
 * largest leaf memcg under the OOMing one (usage minus page cache), skipping
 * leaves that hold a task with oom_score_adj -1000.
 *
 * Three steps, because sleepable kfuncs (the kill) cannot run under
 * bpf_rcu_read_lock, which the css walk needs: collect the leaf ids under
 * RCU, then measure each leaf from its id (both in leaf_memcgs.h), then kill
 * the winner's tasks.
 */
#include "bpfoom_kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "leaf_memcgs.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define MAX_VICTIMS 16

/* Scratch: one OOM at a time runs (the kernel holds oom_lock). */
__u64 leaf_ids[MAX_LEAVES];

/* What the OOM that killed decided, for the test to read. */
__u64 chosen_cgroup_id;
__u64 chosen_size;
__u32 leaves_seen;
/* Over all OOMs: tasks killed and handler calls. */
__u32 tasks_killed;
__u32 handler_calls;

/*
 * Kill every task of the leaf; none if one of them is already dying: the
 * kernel asks again while its victims exit, and the policy then waits (returns
 * 0, so the kernel sees the victim and kills no one) instead of killing more.
 */
static __u32 kill_all_tasks(struct oom_control *oc, __u64 id)
{
	struct bpf_iter_css_task it;
	struct task_struct *task;
	struct cgroup *cgrp;
	__u32 killed = 0;
	bool dying = false;

	cgrp = bpf_cgroup_from_id(id);
	if (!cgrp)
		return 0;
	bpf_iter_css_task_new(&it, &cgrp->self, CSS_TASK_ITER_PROCS);
	while ((task = bpf_iter_css_task_next(&it))) {
		if (bpf_task_is_oom_victim(task)) {
			dying = true;
			break;
		}
	}
	bpf_iter_css_task_destroy(&it);
	if (!dying) {
		bpf_iter_css_task_new(&it, &cgrp->self, CSS_TASK_ITER_PROCS);
		while ((task = bpf_iter_css_task_next(&it))) {
			if (killed >= MAX_VICTIMS)
				break;
			if (bpf_oom_kill_process(oc, task, "largest leaf memcg") == 0)
				killed++;
		}
		bpf_iter_css_task_destroy(&it);
	}
	bpf_cgroup_release(cgrp);
	return killed;
}

SEC("struct_ops.s/handle_out_of_memory")
int BPF_PROG(largest_leaf_oom, struct bpf_oom_ctx *oom_ctx, struct oom_control *oc)
{
	struct mem_cgroup *root = oc->memcg;
	__u64 best_id, best_size;
	__u32 count, killed;

	handler_calls++;
	if (!root)
		return 0; /* a system-wide OOM is not this policy's business */
	count = collect_leaves(root, leaf_ids);
	best_id = pick_largest_leaf(leaf_ids, count, &best_size);
	if (!best_id)
		return 0;
	killed = kill_all_tasks(oc, best_id);
	if (!killed)
		return 0;
	chosen_cgroup_id = best_id;
	chosen_size = best_size;
	leaves_seen = count;
	tasks_killed += killed;
	return 1;
}

SEC(".struct_ops.link")
struct bpf_oom_ops largest_leaf = {
	.handle_out_of_memory = (void *)largest_leaf_oom,
	.name = "largest_leaf",
};
