/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Leaf memcgs under an OOMing memcg: measure them, choose the largest.
 *
 * The choice flushes the scope's stats once (the flush sleeps) and then
 * measures every leaf in one css walk under bpf_rcu_read_lock.  Kills work
 * from ids collected under RCU and acted on after it (collect_cgroups(),
 * for policy_granularity.h).  Counters live in globals for the reason given
 * at `event` in policy_event.h.
 */
#ifndef BPFOOM_POLICY_LEAVES_H
#define BPFOOM_POLICY_LEAVES_H

#define MAX_LEAVES 1024

/*
 * Protection (every shipped bpf_oom_ops policy): a task whose oom_score_adj is
 * at or below this, or a leaf holding one, is chosen only when no other
 * candidate is left.  -900 covers the node daemons Kubernetes protects (the
 * kubelet at -999, the container runtime and critical pods at -997) while
 * -1000 stays never chosen at all, as the kernel's own killer does.
 */
__s32 protected_oom_score_adj = -900;
BPFOOM_TUNABLE_RANGE(protected_oom_score_adj, -1000, 1000,
		     "choose a task (or leaf holding one) whose oom_score_adj is at or below this "
		     "only when no other candidate is left; -1000: protect only the unkillable");

/* Scratch for one OOM: the kernel runs one OOM at a time (oom_lock). */
__u64 leaf_ids[MAX_LEAVES];
__u32 nr_leaves;

struct leaf_stats {
	__u64 usage;		/* memory.current */
	__u64 size;		/* usage, minus page cache when asked */
	bool has_tasks;
	__s32 unkillable_pid;	/* a task with oom_score_adj -1000 (0: none) */
	__s32 exiting_pid;	/* a task already an OOM victim, not one of ours (0: none) */
	__s16 min_adj;		/* the lowest oom_score_adj of its tasks (protection) */
	__s16 max_adj;		/* the highest (the order among equal sizes) */
};

struct leaf_choice {
	__u64 id;		/* the largest killable leaf (0: none) */
	__u64 size;
	__u32 candidates;	/* killable leaves compared */
	__u64 exiting_id;	/* a leaf holding an exiting OOM victim (0: none) */
};

struct leaf_choice choice;

/* Fill leaf_ids/nr_leaves with the cgroups under `root`, itself included. */
static inline void collect_cgroups(struct cgroup_subsys_state *root)
{
	struct cgroup_subsys_state *css;
	struct bpf_iter_css it;
	__u32 n;

	nr_leaves = 0;
	bpf_rcu_read_lock();
	bpf_iter_css_new(&it, root, BPF_CGROUP_ITER_DESCENDANTS_PRE);
	while ((css = bpf_iter_css_next(&it))) {
		n = nr_leaves;
		if (n >= MAX_LEAVES)
			break;
		leaf_ids[n & (MAX_LEAVES - 1)] = css->cgroup->kn->id;
		nr_leaves = n + 1;
	}
	bpf_iter_css_destroy(&it);
	bpf_rcu_read_unlock();
}

/* The tasks of leaf `css` (a memcg's css: for a leaf, its cgroup's tasks). */
static inline void scan_tasks(struct cgroup_subsys_state *css, struct leaf_stats *st)
{
	struct bpf_iter_css_task it;
	struct task_struct *task;

	bpf_iter_css_task_new(&it, css, CSS_TASK_ITER_PROCS);
	while ((task = bpf_iter_css_task_next(&it))) {
		short adj = task->signal->oom_score_adj;

		if (!st->has_tasks || adj < st->min_adj)
			st->min_adj = adj;
		if (!st->has_tasks || adj > st->max_adj)
			st->max_adj = adj;
		st->has_tasks = true;
		if (task->signal->oom_score_adj == OOM_SCORE_ADJ_MIN)
			st->unkillable_pid = task->tgid;
		if (bpf_task_is_oom_victim(task))
			st->exiting_pid = task->tgid;
	}
	bpf_iter_css_task_destroy(&it);
}

/*
 * Whether a measured leaf with tasks can be a candidate; if not, the
 * explanation says why.  A leaf holding an OOM victim makes the policy wait.
 */
static __always_inline bool leaf_is_candidate(__u64 id, struct leaf_stats *st)
{
	if (st->exiting_pid) {
		choice.exiting_id = id;
		explain_exclusion(EXCLUDED_OOM_VICTIM, id, st->exiting_pid);
		return false;
	}
	if (st->unkillable_pid) {
		explain_exclusion(EXCLUDED_UNKILLABLE, id, st->unkillable_pid);
		return false;
	}
	return st->size != 0;
}

/*
 * Fill `st` for a leaf met in an RCU css walk; its stats must have been
 * flushed before the walk (the flush sleeps): no lookup by id, no flush
 * per leaf.
 */
static inline void measure_walked_leaf(struct cgroup_subsys_state *css, bool exclude_page_cache,
				       struct leaf_stats *st)
{
	struct mem_cgroup *memcg;
	__u64 usage, cache;

	__builtin_memset(st, 0, sizeof(*st));
	memcg = bpf_get_mem_cgroup(css); /* a reference: the task iterator wants one */
	if (!memcg)
		return;
	usage = bpf_mem_cgroup_usage(memcg);
	cache = exclude_page_cache ? bpf_mem_cgroup_page_state(memcg,
			bpf_core_enum_value(enum node_stat_item, NR_FILE_PAGES)) : 0;
	st->usage = usage;
	st->size = usage > cache ? usage - cache : 0;
	scan_tasks(&memcg->css, st);
	bpf_put_mem_cgroup(memcg);
}

/*
 * Walk the candidate leaves under `root`: one flush of the whole scope, then
 * one css walk under RCU (at 1,000 leaves a lookup and a flush per leaf cost
 * more than the kernel's own choice: bench/decision_cost.py).
 *
 *	leaf_walk_start(root, &it);
 *	while ((css = next_candidate_leaf(&it, exclude_page_cache, &st, &id)))
 *		...;
 *	leaf_walk_end(&it);
 */
static __always_inline void leaf_walk_start(struct mem_cgroup *root, struct bpf_iter_css *it)
{
	bpf_mem_cgroup_flush_stats(root);
	bpf_rcu_read_lock();
	bpf_iter_css_new(it, &root->css, BPF_CGROUP_ITER_DESCENDANTS_PRE);
}

static __always_inline void leaf_walk_end(struct bpf_iter_css *it)
{
	bpf_iter_css_destroy(it);
	bpf_rcu_read_unlock();
}

/* The next leaf with tasks that can be a candidate (`st` and `id` filled), or NULL. */
static __always_inline struct cgroup_subsys_state *
next_candidate_leaf(struct bpf_iter_css *it, bool exclude_page_cache, struct leaf_stats *st,
		    __u64 *id)
{
	struct cgroup_subsys_state *css;

	while ((css = next_leaf(it))) {
		measure_walked_leaf(css, exclude_page_cache, st);
		if (!st->has_tasks)
			continue;
		*id = css->cgroup->kn->id;
		if (leaf_is_candidate(*id, st))
			return css;
	}
	return NULL;
}

/* Whether a candidate leaf holds a protected task (protected_oom_score_adj). */
static __always_inline bool leaf_is_protected(struct leaf_stats *st)
{
	return st->min_adj <= protected_oom_score_adj;
}

/* Whether leaf `st` beats the best so far (`size`, `max_adj`): larger, or as large with a higher
 * oom_score_adj. */
static __always_inline bool leaf_beats(struct leaf_stats *st, __u64 size, __s16 max_adj, __u64 id)
{
	return !id || st->size > size || (st->size == size && st->max_adj > max_adj);
}

/*
 * Set `choice` to the largest leaf under `root` with tasks, none of them
 * unkillable; a protected leaf only when no unprotected one is a candidate.
 */
static inline void choose_largest_leaf(struct mem_cgroup *root, bool exclude_page_cache)
{
	struct bpf_iter_css it;
	struct leaf_stats st;
	__u64 id, spare_id = 0, spare_size = 0;
	__s16 best_adj = 0, spare_adj = 0;

	__builtin_memset(&choice, 0, sizeof(choice));
	leaf_walk_start(root, &it);
	while (next_candidate_leaf(&it, exclude_page_cache, &st, &id)) {
		choice.candidates++;
		explain_candidate(id, 0, st.usage, st.size, 0, false);
		if (leaf_is_protected(&st)) {
			if (leaf_beats(&st, spare_size, spare_adj, spare_id)) {
				spare_size = st.size;
				spare_adj = st.max_adj;
				spare_id = id;
			}
			continue;
		}
		if (leaf_beats(&st, choice.size, best_adj, choice.id)) {
			choice.size = st.size;
			best_adj = st.max_adj;
			choice.id = id;
		}
	}
	leaf_walk_end(&it);
	if (!choice.id && spare_id) {
		choice.id = spare_id;
		choice.size = spare_size;
	}
}

#endif
