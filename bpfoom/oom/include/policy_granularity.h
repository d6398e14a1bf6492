/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * What dies once a policy has chosen its victim cgroup: the granularity set
 * per cgroup from user space in the `granularity` map (cgroup id -> enum
 * policy_granularity).
 *
 * The nearest entry walking up from the victim cgroup to the OOMing memcg
 * (the scope, included; at most POLICY_MAX_DEPTH levels) decides; without one
 * the policy's own default (POLICY_DEFAULT_GRANULARITY) applies:
 *   task     the policy's chosen task (task policies), or the victim cgroup's
 *            largest killable task (resident + swapped memory; leaf policies)
 *   cgroup   every task of the victim cgroup
 *   subtree  every task of the cgroup holding the setting and of its descendants
 * Entries changed while attached apply from the next OOM on.
 *
 * memory.oom.group: bpf_oom_kill_process() kills as the kernel's killer does,
 * so killing one task of a memcg with oom.group set (the highest such memcg
 * between the victim's and the OOMing one) kills that whole memcg, whatever
 * the granularity.  The event names that memcg (oom_group_cgroup_id).
 *
 * A policy including this defines POLICY_DEFAULT_GRANULARITY, and
 * POLICY_DRY_RUN to only list the tasks (then without policy_kill.h).
 */
#ifndef BPFOOM_POLICY_GRANULARITY_H
#define BPFOOM_POLICY_GRANULARITY_H

#define POLICY_MAX_DEPTH 16

#ifndef POLICY_DRY_RUN
/* Any policy, as a dry run: it decides and reports whom it would kill, kills nobody and returns
 * 0, so the kernel's killer (or the next policy up) decides (the daemon's `dry_run = true`). */
bool dry_run = false;
BPFOOM_TUNABLE(dry_run, "decide and report whom it would kill, but kill nobody: the kernel's "
	       "own killer (or the next policy up) decides");
#endif

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u32);
} granularity SEC(".maps");

/*
 * Tasks taken (killed, or listed in a dry run) in this OOM: a global, so that
 * the verifier need not follow a counter through the task loops.
 */
__u32 nr_taken;

/* Resident plus (optionally) swapped bytes, as the kernel's OOM badness counts them. */
static __u64 task_memory(struct task_struct *task, bool with_swap)
{
	struct mm_struct *mm = task->mm;
	__s64 pages;

	if (!mm)
		return 0;
	pages = mm->rss_stat[MM_FILEPAGES].count + mm->rss_stat[MM_ANONPAGES].count +
		mm->rss_stat[MM_SHMEMPAGES].count;
	if (with_swap)
		pages += mm->rss_stat[MM_SWAPENTS].count;
	return pages > 0 ? pages * POLICY_PAGE_SIZE : 0;
}

/* Set event.granularity and event.granularity_cgroup_id for victim cgroup `id`. */
static void granularity_of(__u64 id, int scope_level)
{
	struct cgroup *cgrp, *ancestor;
	__u64 ancestor_id;
	__u32 *entry;
	int level, step;

	event.granularity = POLICY_DEFAULT_GRANULARITY;
	event.granularity_cgroup_id = 0;
	cgrp = bpf_cgroup_from_id(id);
	if (!cgrp)
		return;
	level = cgrp->level;
	bpf_for(step, 0, POLICY_MAX_DEPTH) {
		if (level - step < scope_level)
			break;
		ancestor = bpf_cgroup_ancestor(cgrp, level - step);
		if (!ancestor)
			break;
		ancestor_id = ancestor->kn->id;
		bpf_cgroup_release(ancestor);
		entry = bpf_map_lookup_elem(&granularity, &ancestor_id);
		if (entry && *entry >= GRANULARITY_TASK && *entry <= GRANULARITY_SUBTREE) {
			event.granularity = *entry;
			event.granularity_cgroup_id = ancestor_id;
			break;
		}
	}
	bpf_cgroup_release(cgrp);
}

/*
 * The memcg the kernel kills whole when it kills a task of cgroup `id`: the
 * highest one with memory.oom.group set from the scope down to `id` (0: none).
 */
static __u64 oom_group_of(__u64 id, int scope_level)
{
	struct cgroup *cgrp, *ancestor;
	struct mem_cgroup *memcg;
	__u64 found = 0;
	bool group;
	int step;

	cgrp = bpf_cgroup_from_id(id);
	if (!cgrp)
		return 0;
	bpf_for(step, 0, POLICY_MAX_DEPTH) {
		if (scope_level + step > cgrp->level)
			break;
		ancestor = bpf_cgroup_ancestor(cgrp, scope_level + step);
		if (!ancestor)
			break;
		group = false;
		memcg = bpf_get_mem_cgroup(&ancestor->self);
		if (memcg) {
			group = memcg->oom_group;
			bpf_put_mem_cgroup(memcg);
		}
		if (group)
			found = ancestor->kn->id;
		bpf_cgroup_release(ancestor);
		if (found)
			break;
	}
	bpf_cgroup_release(cgrp);
	return found;
}

/* Kill (or, in a dry run, list) one task of cgroup `id`, counted in nr_taken. */
static __always_inline void take_task(struct oom_control *oc, struct task_struct *task, __u64 id,
				      const char *message)
{
#ifndef POLICY_DRY_RUN
	int err;

	if (!dry_run) {
		err = bpf_oom_kill_process(oc, task, message);
		if (err) {
			if (!event.error)
				event.error = err;
			return;
		}
		victims_add(task->tgid, id);
	}
#endif
	event_add_pid(task->tgid);
	nr_taken++;
}

/* Every task of cgroup `id` except unkillable ones (explained). */
static void take_cgroup(struct oom_control *oc, __u64 id, const char *message)
{
	struct bpf_iter_css_task it;
	struct task_struct *task;
	struct cgroup *cgrp;

	cgrp = bpf_cgroup_from_id(id);
	if (!cgrp)
		return;
	bpf_iter_css_task_new(&it, &cgrp->self, CSS_TASK_ITER_PROCS);
	while ((task = bpf_iter_css_task_next(&it))) {
		if (task->flags & PF_KTHREAD)
			continue;
		if (task->signal->oom_score_adj == OOM_SCORE_ADJ_MIN) {
			explain_exclusion(EXCLUDED_UNKILLABLE, id, task->tgid);
			continue;
		}
		take_task(oc, task, id, message);
	}
	bpf_iter_css_task_destroy(&it);
	bpf_cgroup_release(cgrp);
}

/* The killable task of cgroup `id` with the most memory (0: none). */
static __s32 largest_task_of(__u64 id)
{
	struct bpf_iter_css_task it;
	struct task_struct *task;
	struct cgroup *cgrp;
	__u64 memory, most = 0;
	__s32 pid = 0;

	cgrp = bpf_cgroup_from_id(id);
	if (!cgrp)
		return 0;
	bpf_iter_css_task_new(&it, &cgrp->self, CSS_TASK_ITER_PROCS);
	while ((task = bpf_iter_css_task_next(&it))) {
		if ((task->flags & PF_KTHREAD) || task->signal->oom_score_adj == OOM_SCORE_ADJ_MIN ||
		    bpf_task_is_oom_victim(task))
			continue;
		memory = task_memory(task, true);
		if (!pid || memory > most) {
			pid = task->tgid;
			most = memory;
		}
	}
	bpf_iter_css_task_destroy(&it);
	bpf_cgroup_release(cgrp);
	return pid;
}

/* Task `pid` of cgroup `id`. */
static void take_pid(struct oom_control *oc, __s32 pid, __u64 id, const char *message)
{
	struct task_struct *task;

	task = bpf_task_from_pid(pid);
	if (!task) {
		event.error = -3; /* -ESRCH: it exited meanwhile */
		return;
	}
	take_task(oc, task, id, message);
	bpf_task_release(task);
}

/* Every task of cgroup `id` and its descendants. */
static void take_subtree(struct oom_control *oc, __u64 id, const char *message)
{
	struct cgroup *cgrp;
	int i;

	cgrp = bpf_cgroup_from_id(id);
	if (!cgrp)
		return;
	collect_cgroups(&cgrp->self);
	bpf_cgroup_release(cgrp);
	bpf_for(i, 0, nr_leaves)
		take_cgroup(oc, leaf_ids[i & (MAX_LEAVES - 1)], message);
}

/*
 * Kill (or list) what the granularity of victim cgroup `id` says, `pid` being
 * the policy's chosen task if it chose one: how many tasks were taken.
 */
static __u32 take_victims(struct oom_control *oc, struct mem_cgroup *scope, __u64 id, __s32 pid,
			  const char *message)
{
	int scope_level = scope->css.cgroup->level;

	granularity_of(id, scope_level);
	event.oom_group_cgroup_id = oom_group_of(id, scope_level);
	nr_taken = 0;
#ifndef POLICY_DRY_RUN
	victims_forget();
#endif
	if (event.granularity == GRANULARITY_SUBTREE && event.granularity_cgroup_id) {
		take_subtree(oc, event.granularity_cgroup_id, message);
	} else if (event.granularity == GRANULARITY_TASK) {
		if (!pid)
			pid = largest_task_of(id);
		if (pid)
			take_pid(oc, pid, id, message);
	} else {
		take_cgroup(oc, id, message);
	}
	return nr_taken;
}

/* Report what take_victims() took: killed (returns 1), or in a dry run would have (returns 0). */
static __always_inline int report_taken(__u16 reason)
{
#ifndef POLICY_DRY_RUN
	if (!dry_run) {
		event_send(ACTION_KILLED, reason);
		return 1;
	}
#endif
	event_send(ACTION_DRY_RUN, reason);
	return 0;
}

#endif
