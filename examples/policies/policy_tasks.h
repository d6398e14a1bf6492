/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Task-level choices inside the OOMing memcg: walk the tasks of its leaf
 * cgroups (policy_leaves.h finds them), rank each killable one with the
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
};

struct task_choice task_choice;

/* The policy's ordering: the killable task with the largest rank dies. */
static __u64 task_rank(struct task_struct *task, __u64 memory);

static void rank_tasks_of(__u64 id)
{
	struct bpf_iter_css_task it;
	struct task_struct *task;
	struct cgroup *cgrp;
	__u64 memory, rank;

	cgrp = bpf_cgroup_from_id(id);
	if (!cgrp)
		return;
	bpf_iter_css_task_new(&it, &cgrp->self, CSS_TASK_ITER_PROCS);
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
		explain_candidate(id, task->tgid, memory, rank, 0, false);
		if (!task_choice.pid || rank > task_choice.rank) {
			task_choice.pid = task->tgid;
			task_choice.cgroup_id = id;
			task_choice.memory = memory;
			task_choice.rank = rank;
		}
	}
	bpf_iter_css_task_destroy(&it);
	bpf_cgroup_release(cgrp);
}

/* Set task_choice to the best killable task under `root`. */
static void choose_task(struct mem_cgroup *root)
{
	int i;

	__builtin_memset(&task_choice, 0, sizeof(task_choice));
	collect_leaves(root);
	bpf_for(i, 0, nr_leaves)
		rank_tasks_of(leaf_ids[i & (MAX_LEAVES - 1)]);
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
	event_send(ACTION_KILLED, POLICY_REASON);
	return 1;
}

#endif
