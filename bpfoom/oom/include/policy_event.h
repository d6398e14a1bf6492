/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The decision record every bpfoom policy writes to its `events` ring buffer,
 * one per decision, decoded by bpfoom/oom/events.py with the layout of
 * struct policy_event read from the object's own BTF.  `schema` versions the
 * record: a reader refuses a schema it does not know instead of misreading
 * it, and a new field means a new schema number.
 *
 * Define POLICY_NAME (a string literal, at most 31 characters) before
 * including this header.
 */
#ifndef BPFOOM_POLICY_EVENT_H
#define BPFOOM_POLICY_EVENT_H

#define POLICY_EVENT_SCHEMA 2
#define POLICY_EVENT_MAX_PIDS 16
#define POLICY_NAME_LEN 32
#define POLICY_EVENT_MAX_CANDIDATES 8	/* the best ones, in the order they would die */
#define POLICY_EVENT_MAX_EXCLUDED_IDS 4	/* per exclusion reason: the first ones met */
#define POLICY_HISTORY 16		/* decisions kept in `decisions` for `bpfoom explain` */

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
	REASON_QUIET_AFTER_OOM = 12,	/* a trigger fired within quiet_after_oom_ms of an OOM that freed memory */
};

/* Why a cgroup or task was not a candidate (the index into excluded[]). */
enum policy_exclusion {
	EXCLUDED_UNKILLABLE = 0,	/* a task with oom_score_adj -1000 (or a cgroup holding one) */
	EXCLUDED_PROTECTED = 1,		/* a protected cgroup, passed over for an unprotected one */
	EXCLUDED_OOM_VICTIM = 2,	/* already an OOM victim (or a cgroup holding one) */
	EXCLUDED_BELOW_MINIMUM = 3,	/* a task smaller than min_victim_bytes */
	EXCLUSION_REASONS = 4,
};

/* What dies once the victim is chosen (policy_granularity.h). */
enum policy_granularity {
	GRANULARITY_DEFAULT = 0,	/* no setting: the policy's own */
	GRANULARITY_TASK = 1,		/* one task of the victim cgroup */
	GRANULARITY_CGROUP = 2,		/* every task of the victim cgroup */
	GRANULARITY_SUBTREE = 3,	/* every task under the cgroup holding the setting */
};

#define CANDIDATE_PROTECTED (1U << 0)

/* One candidate the policy ranked. */
struct policy_candidate {
	__u64 cgroup_id;	/* the leaf cgroup, or the task's cgroup */
	__u64 usage_bytes;	/* a cgroup's memory.current; a task's resident (+ swapped) bytes */
	__u64 rank;		/* what it was ranked by: usage minus page cache, task memory, start time */
	__s32 pid;		/* a task candidate's pid; 0 for a cgroup */
	__s32 priority;		/* its priority class (priority policy), else 0 */
	__u32 flags;		/* CANDIDATE_* */
	__u32 reserved;
};

/* The candidates left out for one reason: how many, and the first few. */
struct policy_exclusions {
	__u32 count;
	__u32 reserved;
	__u64 cgroup_ids[POLICY_EVENT_MAX_EXCLUDED_IDS];
	__s32 pids[POLICY_EVENT_MAX_EXCLUDED_IDS];	/* the task (0: the whole cgroup) */
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
	__u16 granularity;	/* enum policy_granularity applied (0: nothing was killed) */
	__u16 reserved;
	__s32 pids[POLICY_EVENT_MAX_PIDS];
	__u64 granularity_cgroup_id;	/* the cgroup whose setting applied (0: the policy's default) */
	__u64 oom_group_cgroup_id;	/* memory.oom.group: the memcg the kernel killed whole (0: none) */
	__u32 nr_candidates;	/* entries of candidate[] */
	__u32 reserved2;
	struct policy_candidate candidate[POLICY_EVENT_MAX_CANDIDATES];
	struct policy_exclusions excluded[EXCLUSION_REASONS];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

/*
 * The last POLICY_HISTORY decisions, oldest overwritten first, for readers
 * that must not consume `events` (`bpfoom explain`): they read every slot and
 * order the records by time_ns.  An unused slot has schema 0.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, POLICY_HISTORY);
	__type(key, __u32);
	__type(value, struct policy_event);
} decisions SEC(".maps");

/*
 * Records the ring buffer had no room for, in slot 0.  A map, not a global:
 * it is pinned next to `events` (bpfoom attach, the daemon), so a reader of
 * the pinned ring can report what it lost.  Its BTF is the object's, which
 * also gives such a reader the layout of struct policy_event.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} events_dropped SEC(".maps");
/* Decisions written to `decisions` so far (the next slot is this modulo POLICY_HISTORY). */
__u64 decisions_made;
/*
 * The victim cgroup of the last WAITING event: the kernel retries the OOM
 * many times while a victim exits, and one event per victim says it all.
 */
__u64 waiting_reported;

/*
 * The decision being built.  A global, not a stack variable: the kernel runs
 * one OOM at a time (oom_lock), the record is larger than a BPF stack, and
 * the verifier does not track values in maps, so counters kept here do not
 * multiply the states it explores in loops.
 */
struct policy_event event;


static __always_inline void event_dropped(void)
{
	__u32 slot = 0;
	__u64 *dropped = bpf_map_lookup_elem(&events_dropped, &slot);

	if (dropped)
		__sync_fetch_and_add(dropped, 1);
}

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
	__u32 slot;

	if (action == ACTION_WAITING) {
		if (waiting_reported == event.victim_cgroup_id)
			return;
		waiting_reported = event.victim_cgroup_id;
	} else {
		waiting_reported = 0;
	}
	event.action = action;
	event.reason = reason;
	slot = decisions_made % POLICY_HISTORY;
	bpf_map_update_elem(&decisions, &slot, &event, BPF_ANY);
	decisions_made++;
	if (bpf_ringbuf_output(&events, &event, sizeof(event), 0))
		event_dropped();
}

static __always_inline void event_add_pid(__s32 pid)
{
	__u32 n = event.nr_pids;

	if (n < POLICY_EVENT_MAX_PIDS)
		event.pids[n & (POLICY_EVENT_MAX_PIDS - 1)] = pid;
	event.nr_pids = n + 1;
}

/* Whether candidate (protected, priority, rank) dies before `other`: unprotected, lower class, larger rank. */
static __always_inline bool dies_before(bool protected, __s32 priority, __u64 rank,
					const struct policy_candidate *other)
{
	bool other_protected = other->flags & CANDIDATE_PROTECTED;

	if (protected != other_protected)
		return !protected;
	if (priority != other->priority)
		return priority < other->priority;
	return rank > other->rank;
}

/*
 * Add a ranked candidate to the explanation, keeping candidate[] in the order
 * the candidates would die (ties: the one met first, as the policies choose).
 */
static __always_inline void explain_candidate(__u64 cgroup_id, __s32 pid, __u64 usage, __u64 rank,
						 __s32 priority, bool protected)
{
	const __u32 last = POLICY_EVENT_MAX_CANDIDATES - 1;
	struct policy_candidate *slot;
	__u32 n = event.nr_candidates, pos = n;
	int i;

	/* Most candidates of a large tree do not make a full list: one compare, not a walk. */
	if (n > last && !dies_before(protected, priority, rank, &event.candidate[last]))
		return;
	bpf_for(i, 0, POLICY_EVENT_MAX_CANDIDATES) {
		if (i >= n)
			break;
		if (dies_before(protected, priority, rank, &event.candidate[i & last])) {
			pos = i;
			break;
		}
	}
	if (pos > last)
		return;
	bpf_for(i, 0, POLICY_EVENT_MAX_CANDIDATES) {
		int k = (n < last ? n : last) - i;

		if (k <= (int)pos)
			break;
		event.candidate[k & last] = event.candidate[(k - 1) & last];
	}
	slot = &event.candidate[pos & last];
	slot->cgroup_id = cgroup_id;
	slot->usage_bytes = usage;
	slot->rank = rank;
	slot->pid = pid;
	slot->priority = priority;
	slot->flags = protected ? CANDIDATE_PROTECTED : 0;
	slot->reserved = 0;
	if (n <= last)
		event.nr_candidates = n + 1;
}

/* Record that a cgroup (pid 0) or a task was left out, and why (enum policy_exclusion). */
static __always_inline void explain_exclusion(__u32 why, __u64 cgroup_id, __s32 pid)
{
	const __u32 last = POLICY_EVENT_MAX_EXCLUDED_IDS - 1;
	struct policy_exclusions *excluded;
	__u32 n;

	if (why >= EXCLUSION_REASONS)
		return;
	excluded = &event.excluded[why];
	n = excluded->count;
	if (n <= last) {
		excluded->cgroup_ids[n & last] = cgroup_id;
		excluded->pids[n & last] = pid;
	}
	excluded->count = n + 1;
}

/*
 * A record built in the ring buffer, for callbacks that run outside oom_lock
 * (cgroup offline, PSI events) and so must not use `event`.
 */
static __always_inline void event_send_unlocked(__u16 action, __u16 reason, __u64 scope_cgroup_id,
						__u64 oom_cgroup_id, __u64 victim_cgroup_id,
						__s32 error)
{
	struct policy_event *e;

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		event_dropped();
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->schema = POLICY_EVENT_SCHEMA;
	e->size = sizeof(*e);
	__builtin_memcpy(e->policy, POLICY_NAME, sizeof(POLICY_NAME));
	e->time_ns = bpf_ktime_get_ns();
	e->scope_cgroup_id = scope_cgroup_id;
	e->oom_cgroup_id = oom_cgroup_id;
	e->victim_cgroup_id = victim_cgroup_id;
	e->error = error;
	e->action = action;
	e->reason = reason;
	bpf_ringbuf_submit(e, 0);
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
