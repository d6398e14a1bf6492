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

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define MAX_LEAVES 16
#define MAX_KILLS 8

__u64 leaves[MAX_LEAVES];
__u32 calls;
__u32 kills;
__u32 victim_claims;

static __u32 gather_leaves(struct mem_cgroup *root)
{
	struct cgroup_subsys_state *css;
	struct bpf_iter_css it;
	__u32 n = 0;

	bpf_rcu_read_lock();
	bpf_iter_css_new(&it, &root->css, BPF_CGROUP_ITER_DESCENDANTS_PRE);
	while ((css = bpf_iter_css_next(&it))) {
		if (css->cgroup->nr_descendants || n >= MAX_LEAVES)
			continue;
		leaves[n & (MAX_LEAVES - 1)] = css->cgroup->kn->id;
		n++;
	}
	bpf_iter_css_destroy(&it);
	bpf_rcu_read_unlock();
	return n;
}

/* Anonymous size of a killable leaf, 0 otherwise. */
static __u64 measure(__u64 id)
{
	struct bpf_iter_css_task it;
	struct mem_cgroup *memcg;
	struct task_struct *task;
	struct cgroup *cgrp;
	__u64 usage, cache, size = 0;

	cgrp = bpf_cgroup_from_id(id);
	if (!cgrp)
		return 0;
	memcg = bpf_get_mem_cgroup(&cgrp->self);
	if (memcg) {
		bpf_mem_cgroup_flush_stats(memcg);
		usage = bpf_mem_cgroup_usage(memcg);
		cache = bpf_mem_cgroup_page_state(memcg,
				bpf_core_enum_value(enum node_stat_item, NR_FILE_PAGES));
		size = usage > cache ? usage - cache : 0;
		bpf_put_mem_cgroup(memcg);
	}
	if (size) {
		bpf_iter_css_task_new(&it, &cgrp->self, CSS_TASK_ITER_PROCS);
		while ((task = bpf_iter_css_task_next(&it)))
			if (task->signal->oom_score_adj == OOM_SCORE_ADJ_MIN) {
				size = 0;
				break;
			}
		bpf_iter_css_task_destroy(&it);
	}
	bpf_cgroup_release(cgrp);
	return size;
}

SEC("struct_ops.s/handle_out_of_memory")
int BPF_PROG(overkill_oom, struct bpf_oom_ctx *oom_ctx, struct oom_control *oc)
{
	struct mem_cgroup *root = oc->memcg;
	struct bpf_iter_css_task it;
	struct task_struct *task;
	__u64 best = 0, best_size = 0, size;
	struct cgroup *cgrp;
	__u32 n, i, killed = 0;
	int ret = 0;

	calls++;
	if (!root)
		return 0;
	n = gather_leaves(root);
	for (i = 0; i < n && i < MAX_LEAVES; i++) {
		size = measure(leaves[i]);
		if (size > best_size) {
			best_size = size;
			best = leaves[i];
		}
	}
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
