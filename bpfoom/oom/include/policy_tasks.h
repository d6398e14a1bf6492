/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Task-level choices inside the OOMing memcg: walk the tasks of its leaf
 * cgroups (walked under RCU), rank each killable one with the
 * policy's task_rank() (largest wins), kill the best: decide() for policy_scope.h.
 *
 * A policy including this defines, before including it, POLICY_REASON (its
 * enum policy_reason) and POLICY_KILL_MESSAGE, plus the globals
 * min_victim_bytes and count_swap, and after it task_rank().  What dies is
 * the chosen task, or more if a granularity setting says so
 * (policy_granularity.h, included before this).
 */
#ifndef BPFOOM_POLICY_TASKS_H
#define BPFOOM_POLICY_TASKS_H

struct task_choice {
	__s32 pid;		/* the chosen task (0: none) */
	__u64 cgroup_id;	/* its cgroup */
	__u64 memory;		/* its resident (+ swapped) bytes */
	__u64 rank;		/* what it was chosen by */
	__u32 candidates;	/* killable tasks compared */
	__u64 exiting_id;	/* a cgroup holding an OOM victim not ours (0: none) */
	__s16 adj;		/* its oom_score_adj (the order among equal ranks) */
};

struct task_choice task_choice;
/* The best protected task (protected_oom_score_adj, policy_leaves.h): chosen only without any
 * other candidate. */
struct task_choice task_spare;

/* Whether the task (`rank`, `adj`) beats `best`: ranked higher, or as high with a higher adj. */
static __always_inline bool task_beats(struct task_choice *best, __u64 rank, short adj)
{
	return !best->pid || rank > best->rank || (rank == best->rank && adj > best->adj);
}

/* The policy's ordering: the killable task with the largest rank dies. */
static __u64 task_rank(struct task_struct *task, __u64 memory);

/* Rank the tasks of leaf memcg `css` (cgroup `id`), met in choose_task()'s walk under RCU. */
static void rank_tasks_of(struct cgroup_subsys_state *css, __u64 id)
{
	struct bpf_iter_css_task it;
	struct task_struct *task;
	struct task_choice *best;
	__u64 memory, rank;
	short adj;

	bpf_iter_css_task_new(&it, css, CSS_TASK_ITER_PROCS);
	while ((task = bpf_iter_css_task_next(&it))) {
		if (task->flags & PF_KTHREAD)
			continue;
		if (bpf_task_is_oom_victim(task)) {
			task_choice.exiting_id = id;
			explain_exclusion(EXCLUDED_OOM_VICTIM, id, task->tgid);
			continue;
		}
		if (task->signal->oom_score_adj == OOM_SCORE_ADJ_MIN) {
			explain_exclusion(EXCLUDED_UNKILLABLE, id, task->tgid);
			continue;
		}
		memory = task_memory(task, count_swap);
		if (!memory)
			continue;
		if (memory < min_victim_bytes) {
			explain_exclusion(EXCLUDED_BELOW_MINIMUM, id, task->tgid);
			continue;
		}
		task_choice.candidates++;
		rank = task_rank(task, memory);
		adj = task->signal->oom_score_adj;
		explain_candidate(id, task->tgid, memory, rank, 0, false);
		best = adj <= protected_oom_score_adj ? &task_spare : &task_choice;
		if (task_beats(best, rank, adj)) {
			best->pid = task->tgid;
			best->cgroup_id = id;
			best->memory = memory;
			best->rank = rank;
			best->adj = adj;
		}
	}
	bpf_iter_css_task_destroy(&it);
}

/* Set task_choice to the best killable task under `root`: one walk of its leaves under RCU. */
static void choose_task(struct mem_cgroup *root)
{
	struct cgroup_subsys_state *css;
	struct mem_cgroup *memcg;
	struct bpf_iter_css it;

	__builtin_memset(&task_choice, 0, sizeof(task_choice));
	__builtin_memset(&task_spare, 0, sizeof(task_spare));
	bpf_rcu_read_lock();
	bpf_iter_css_new(&it, &root->css, BPF_CGROUP_ITER_DESCENDANTS_PRE);
	while ((css = next_leaf(&it))) {
		memcg = bpf_get_mem_cgroup(css); /* a reference: the task iterator wants one */
		if (!memcg)
			continue;
		rank_tasks_of(&memcg->css, css->cgroup->kn->id);
		bpf_put_mem_cgroup(memcg);
	}
	bpf_iter_css_destroy(&it);
	bpf_rcu_read_unlock();
	if (!task_choice.pid && task_spare.pid) {
		task_choice.pid = task_spare.pid;
		task_choice.cgroup_id = task_spare.cgroup_id;
		task_choice.memory = task_spare.memory;
		task_choice.rank = task_spare.rank;
	}
}

static int decide(struct oom_control *oc, struct mem_cgroup *scope)
{
	if (wait_for_victim(oc, scope))
		return 1;
	choose_task(scope);
	event.candidates = task_choice.candidates;
	event.victim_cgroup_id = task_choice.cgroup_id;
	event.usage_bytes = task_choice.memory;
	if (!task_choice.pid) {
		if (task_choice.exiting_id) {
			event.victim_cgroup_id = task_choice.exiting_id;
			event_send(ACTION_WAITING, REASON_VICTIM_EXITING);
		} else {
			event_send(ACTION_DECLINED, REASON_NOTHING_KILLABLE);
		}
		return 0;
	}
	if (!take_victims(oc, scope, task_choice.cgroup_id, task_choice.pid, POLICY_KILL_MESSAGE)) {
		event_send(ACTION_DECLINED, REASON_KILL_FAILED);
		return 0;
	}
	return report_taken(POLICY_REASON);
}

#endif
