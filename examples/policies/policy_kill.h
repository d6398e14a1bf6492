/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Killing, and remembering whom: a policy waits for its victims' memory
 * instead of killing someone else.
 *
 * The kernel asks the policy again while a victim exits, and an exiting
 * process vanishes from cgroup task walks (Linux 7.2 hides tasks with
 * PF_EXITING and no live threads; BPF's css_task iterator cannot opt out)
 * while its memory is still charged.  Looking only at the cgroups, neither
 * the policy nor the kernel's own killer (which walks the same way) would
 * see the victim, and one of them would kill the next task.
 *
 * So the policy remembers its victims by pid.  While one is inside the
 * OOMing memcg and has not reached exit_notify() (exit_state 0, which comes
 * after exit_mmap() has freed everything; MMF_OOM_SKIP does not tell, exit_mmap()
 * sets it before its last pages are freed), the policy hands it to
 * bpf_oom_kill_process() again: for a task already on its way out the kernel
 * kills nobody new (it gives the victim memory reserves and wakes the OOM
 * reaper, or logs "already exiting", without counting a kill), and the OOM
 * counts as handled, so the kernel's killer does not pick a second victim
 * either.  A victim stuck for victim_wait_ms (the includer's tunable) is given
 * up on, as the kernel's OOM reaper gives up on an mm it cannot reap.
 */
#ifndef BPFOOM_POLICY_KILL_H
#define BPFOOM_POLICY_KILL_H

#define MAX_TRACKED_VICTIMS 16

__s32 victim_pids[MAX_TRACKED_VICTIMS];
__u64 victim_cgroups[MAX_TRACKED_VICTIMS];
__u64 victims_killed_ns; /* when they were killed (CLOCK_MONOTONIC) */
__u32 nr_victims;

/* Start a new list of victims, killed now. */
static __always_inline void victims_forget(void)
{
	nr_victims = 0;
	victims_killed_ns = bpf_ktime_get_ns();
}

static __always_inline void victims_add(__s32 pid, __u64 cgroup_id)
{
	__u32 n = nr_victims;

	if (n >= MAX_TRACKED_VICTIMS)
		return;
	victim_pids[n & (MAX_TRACKED_VICTIMS - 1)] = pid;
	victim_cgroups[n & (MAX_TRACKED_VICTIMS - 1)] = cgroup_id;
	nr_victims = n + 1;
}

/* Whether cgroup `id` is `root` or below it. */
static inline bool cgroup_is_under(__u64 id, struct mem_cgroup *root)
{
	struct cgroup *cgrp, *ancestor;
	struct cgroup *top = root->css.cgroup;
	__u64 top_id = top->kn->id;
	int level = top->level;
	bool under = false;

	cgrp = bpf_cgroup_from_id(id);
	if (!cgrp)
		return false;
	ancestor = bpf_cgroup_ancestor(cgrp, level);
	if (ancestor) {
		under = ancestor->kn->id == top_id;
		bpf_cgroup_release(ancestor);
	}
	bpf_cgroup_release(cgrp);
	return under;
}

static inline bool still_releasing(struct task_struct *task)
{
	return !task->exit_state && bpf_task_is_oom_victim(task);
}

/*
 * If one of our victims is still releasing memory under `root`, re-kill it
 * (see above) and report a WAITING event: true if that handled the OOM.
 */
static inline bool wait_for_victim(struct oom_control *oc, struct mem_cgroup *root)
{
	struct task_struct *task;
	__u64 cgroup_id;
	__s32 pid;
	int i, err;

	if (bpf_ktime_get_ns() - victims_killed_ns > victim_wait_ms * 1000000ULL)
		return false;
	bpf_for(i, 0, nr_victims) {
		if (i >= MAX_TRACKED_VICTIMS)
			break;
		cgroup_id = victim_cgroups[i & (MAX_TRACKED_VICTIMS - 1)];
		if (!cgroup_is_under(cgroup_id, root))
			continue;
		pid = victim_pids[i & (MAX_TRACKED_VICTIMS - 1)];
		task = bpf_task_from_pid(pid);
		if (!task)
			continue;
		if (!still_releasing(task)) {
			bpf_task_release(task);
			continue;
		}
		err = bpf_oom_kill_process(oc, task, "bpfoom: victim still exiting");
		bpf_task_release(task);
		if (err)
			return false; /* no longer killable: choose afresh */
		event.victim_cgroup_id = cgroup_id;
		event_add_pid(pid);
		event_send(ACTION_WAITING, REASON_VICTIM_EXITING);
		return true;
	}
	return false;
}

#endif
