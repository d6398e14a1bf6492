/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The search the leaf-killing test policies (oom_tree, overkill_leaf) share:
 * the largest leaf memcg under an OOMing one, by usage minus page cache,
 * leaves holding a task with oom_score_adj -1000 excluded.  Include after
 * bpfoom_kernel.h and bpf_core_read.h.
 *
 * Two steps, because sleepable kfuncs cannot run under bpf_rcu_read_lock,
 * which the css walk needs: collect the leaf ids under RCU into the caller's
 * scratch array, then measure each leaf from its id.
 */
#ifndef BPFOOM_LEAF_MEMCGS_H
#define BPFOOM_LEAF_MEMCGS_H

#define MAX_LEAVES 16

/* The ids of the leaf memcgs under root, MAX_LEAVES at most, into ids[MAX_LEAVES]; how many. */
static __u32 collect_leaves(struct mem_cgroup *root, __u64 *ids)
{
	struct cgroup_subsys_state *css;
	struct bpf_iter_css it;
	__u32 count = 0;

	bpf_rcu_read_lock();
	bpf_iter_css_new(&it, &root->css, BPF_CGROUP_ITER_DESCENDANTS_PRE);
	while ((css = bpf_iter_css_next(&it))) {
		if (css->cgroup->nr_descendants || count >= MAX_LEAVES)
			continue;
		ids[count & (MAX_LEAVES - 1)] = css->cgroup->kn->id;
		count++;
	}
	bpf_iter_css_destroy(&it);
	bpf_rcu_read_unlock();
	return count;
}

static bool has_unkillable_task(struct cgroup *cgrp)
{
	struct bpf_iter_css_task it;
	struct task_struct *task;
	bool found = false;

	bpf_iter_css_task_new(&it, &cgrp->self, CSS_TASK_ITER_PROCS);
	while ((task = bpf_iter_css_task_next(&it))) {
		if (task->signal->oom_score_adj == OOM_SCORE_ADJ_MIN) {
			found = true;
			break;
		}
	}
	bpf_iter_css_task_destroy(&it);
	return found;
}

/* Anonymous-ish size of a leaf, or 0 if it must not be chosen. */
static __u64 leaf_size(__u64 id)
{
	struct mem_cgroup *memcg;
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
	if (size && has_unkillable_task(cgrp))
		size = 0;
	bpf_cgroup_release(cgrp);
	return size;
}

/* The id of the largest of the count leaves in ids (0 if none may be chosen); its size in *size. */
static __u64 pick_largest_leaf(const __u64 *ids, __u32 count, __u64 *size)
{
	__u64 best_id = 0, best_size = 0, this_size;
	__u32 i;

	for (i = 0; i < count && i < MAX_LEAVES; i++) {
		this_size = leaf_size(ids[i]);
		if (this_size > best_size) {
			best_size = this_size;
			best_id = ids[i];
		}
	}
	*size = best_size;
	return best_id;
}

#endif
