/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The decision record every bpfoom policy writes to its `events` ring buffer,
 * one per decision, decoded by bpfoom/events.py.  `schema` versions the
 * layout: a reader refuses a schema it does not know instead of misreading
 * it, and a new field means a new schema number.
 *
 * Define POLICY_NAME (a string literal, at most 31 characters) before
 * including this header.
 */
#ifndef BPFOOM_POLICY_EVENT_H
#define BPFOOM_POLICY_EVENT_H

#define POLICY_EVENT_SCHEMA 1
#define POLICY_EVENT_MAX_PIDS 16
#define POLICY_NAME_LEN 32

/* What the policy did about this OOM. */
enum policy_action {
	ACTION_KILLED = 1,	/* killed pids[], returned 1 */
	ACTION_WAITING = 2,	/* an earlier victim is still exiting: returned 0, the kernel waits */
	ACTION_DECLINED = 3,	/* returned 0: the next handler in the chain (or the kernel) decides */
	ACTION_DRY_RUN = 4,	/* would have killed pids[]; returned 0 */
	ACTION_CGROUP_OFFLINE = 5,	/* the cgroup it was attached to (scope) went away: detached */
	ACTION_DECLARED_OOM = 6,	/* a PSI handler declared an OOM in oom_cgroup_id */
};

/* Why (the rule that picked the victim, or why nothing was killed). */
enum policy_reason {
	REASON_NONE = 0,
	REASON_LARGEST_LEAF = 1,	/* largest killable leaf memcg (usage minus page cache) */
	REASON_PRIORITY_CLASS = 2,	/* largest leaf of the lowest priority class */
	REASON_ONLY_PROTECTED = 3,	/* every candidate was protected: the largest of those */
	REASON_LARGEST_TASK = 4,	/* the task with the most resident and swapped memory */
	REASON_NEWEST_TASK = 5,		/* the most recently started task */
	REASON_VICTIM_EXITING = 6,	/* a task of the scope is already an OOM victim */
	REASON_NOTHING_KILLABLE = 7,	/* no candidate without oom_score_adj -1000 */
	REASON_SYSTEM_WIDE_OOM = 8,	/* a system-wide OOM without a memory controller to rank by */
	REASON_BELOW_MINIMUM = 9,	/* the best candidate is smaller than min_victim_bytes */
	REASON_KILL_FAILED = 10,	/* bpf_oom_kill_process failed (error holds its errno) */
	REASON_MEMORY_PRESSURE = 11,	/* a memory pressure trigger fired */
};

struct policy_event {
	__u16 schema;		/* POLICY_EVENT_SCHEMA */
	__u16 size;		/* sizeof(struct policy_event) */
	__u16 action;		/* enum policy_action */
	__u16 reason;		/* enum policy_reason */
	char policy[POLICY_NAME_LEN];
	__u64 time_ns;		/* CLOCK_MONOTONIC */
	__u64 scope_cgroup_id;	/* where the policy is attached (0: system-wide) */
	__u64 oom_cgroup_id;	/* the memcg that ran out of memory (0: the whole system) */
	__u64 victim_cgroup_id;	/* the chosen cgroup (0: none) */
	__u64 usage_bytes;	/* the quantity that decided (leaf usage, task memory) */
	__s32 error;		/* a failed kill's -errno, else 0 */
	__u32 candidates;	/* how many candidates the policy compared */
	__u32 nr_pids;		/* tasks killed (or that would be); pids[] holds the first 16 */
	__u32 reserved;
	__s32 pids[POLICY_EVENT_MAX_PIDS];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

/* Records the ring buffer had no room for (user space reads it to report losses). */
__u64 events_dropped;
/*
 * The victim cgroup of the last WAITING event: the kernel retries the OOM
 * many times while a victim exits, and one event per victim says it all.
 */
__u64 waiting_reported;

/*
 * The decision being built.  A global, not a stack variable: the kernel runs
 * one OOM at a time (oom_lock), and the verifier does not track values in
 * maps, so counters kept here do not multiply the states it explores in loops.
 */
struct policy_event event;


static __always_inline void event_init(struct bpf_oom_ctx *ctx, struct oom_control *oc)
{
	struct mem_cgroup *memcg = oc->memcg;

	__builtin_memset(&event, 0, sizeof(event));
	event.schema = POLICY_EVENT_SCHEMA;
	event.size = sizeof(event);
	__builtin_memcpy(event.policy, POLICY_NAME, sizeof(POLICY_NAME));
	event.time_ns = bpf_ktime_get_ns();
	event.scope_cgroup_id = ctx->cgroup_id;
	event.oom_cgroup_id = memcg ? memcg_cgroup_id(memcg) : 0;
}

static __always_inline void event_send(__u16 action, __u16 reason)
{
	if (action == ACTION_WAITING) {
		if (waiting_reported == event.victim_cgroup_id)
			return;
		waiting_reported = event.victim_cgroup_id;
	} else {
		waiting_reported = 0;
	}
	event.action = action;
	event.reason = reason;
	if (bpf_ringbuf_output(&events, &event, sizeof(event), 0))
		__sync_fetch_and_add(&events_dropped, 1);
}

static __always_inline void event_add_pid(__s32 pid)
{
	__u32 n = event.nr_pids;

	if (n < POLICY_EVENT_MAX_PIDS)
		event.pids[n & (POLICY_EVENT_MAX_PIDS - 1)] = pid;
	event.nr_pids = n + 1;
}

/*
 * A record built on the stack, for callbacks that run outside oom_lock
 * (cgroup offline, PSI events) and so must not use `event`.
 */
static __always_inline void event_send_unlocked(__u16 action, __u16 reason, __u64 scope_cgroup_id,
						__u64 oom_cgroup_id, __u64 victim_cgroup_id,
						__s32 error)
{
	struct policy_event e;

	__builtin_memset(&e, 0, sizeof(e));
	e.schema = POLICY_EVENT_SCHEMA;
	e.size = sizeof(e);
	__builtin_memcpy(e.policy, POLICY_NAME, sizeof(POLICY_NAME));
	e.time_ns = bpf_ktime_get_ns();
	e.scope_cgroup_id = scope_cgroup_id;
	e.oom_cgroup_id = oom_cgroup_id;
	e.victim_cgroup_id = victim_cgroup_id;
	e.error = error;
	e.action = action;
	e.reason = reason;
	if (bpf_ringbuf_output(&events, &e, sizeof(e), 0))
		__sync_fetch_and_add(&events_dropped, 1);
}

/*
 * The offline callback every policy shares: the kernel detached the policy
 * from a cgroup that went away; say so, so a daemon can notice.
 */
static __always_inline void event_cgroup_offline(__u64 scope_cgroup_id, __u64 cgroup_id)
{
	event_send_unlocked(ACTION_CGROUP_OFFLINE, REASON_NONE, scope_cgroup_id, 0, cgroup_id, 0);
}

#endif
