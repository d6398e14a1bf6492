// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The overkill scenario's policy (issue 16), written for this project: on an
 * OOM, find the largest leaf memcg under the OOMing one (usage minus page
 * cache, leaves with an oom_score_adj -1000 task excluded) and kill its
 * tasks; if one of them is already an OOM victim, return 1 without killing
 * ("being handled"). The kernel must then neither let this policy nor its
 * own killer kill a second task for the same shortage.
 *
 * Counts its calls and kills; the test counts every kill from memory.events.
 */
#include "bpfoom_kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "leaf_memcgs.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define MAX_KILLS 8

__u64 leaves[MAX_LEAVES];
__u32 calls;
__u32 kills;
__u32 victim_claims;

SEC("struct_ops.s/handle_out_of_memory")
int BPF_PROG(overkill_oom, struct bpf_oom_ctx *oom_ctx, struct oom_control *oc)
{
	struct mem_cgroup *root = oc->memcg;
	struct bpf_iter_css_task it;
	struct task_struct *task;
	__u64 best, best_size;
	struct cgroup *cgrp;
	__u32 n, killed = 0;
	int ret = 0;

	calls++;
	if (!root)
		return 0;
	n = collect_leaves(root, leaves);
	best = pick_largest_leaf(leaves, n, &best_size);
	if (!best)
		return 0;
	cgrp = bpf_cgroup_from_id(best);
	if (!cgrp)
		return 0;
	bpf_iter_css_task_new(&it, &cgrp->self, CSS_TASK_ITER_PROCS);
	while ((task = bpf_iter_css_task_next(&it))) {
		if (bpf_task_is_oom_victim(task)) {
			victim_claims++;
			ret = 1;
			break;
		}
		if (killed < MAX_KILLS && !bpf_oom_kill_process(oc, task, "overkill leaf")) {
			killed++;
			ret = 1;
		}
	}
	bpf_iter_css_task_destroy(&it);
	bpf_cgroup_release(cgrp);
	kills += killed;
	return ret;
}

SEC(".struct_ops.link")
struct bpf_oom_ops overkill_leaf = {
	.handle_out_of_memory = (void *)overkill_oom,
	.name = "overkill_leaf",
};
