// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * priority: what it does is its BPFOOM_DESCRIPTION below (`bpfoom policies`
 * shows it); the details:
 *
 * Settings changed while attached apply from the next OOM on.  Cgroup ids are
 * never reused, so a deleted cgroup's entry matches nothing; the attached
 * cgroup's own entry is dropped when it goes offline.  While its victims exit
 * the policy waits for them (policy_kill.h).  In a system-wide OOM the scope
 * is every leaf memcg of the machine.
 */
#include "bpfoom_kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "policy_meta.h"
#include <bpf/bpf_core_read.h>

#define POLICY_NAME "priority"
#define POLICY_DEFAULT_GRANULARITY GRANULARITY_CGROUP

char LICENSE[] SEC("license") = "Dual BSD/GPL";

BPFOOM_DESCRIPTION("kill every task of one leaf memcg, chosen by per-cgroup priority and "
		   "protection set from user space in the `cgroup_settings` map (cgroup id -> "
		   "{priority, protected}; a cgroup without an entry takes its nearest "
		   "ancestor's, up to the OOMing memcg, else default_priority).  The lowest "
		   "priority class dies first, the largest leaf (usage minus page cache) within "
		   "it; protected leaves only when no unprotected one is killable.  Leaves with "
		   "a task whose oom_score_adj is -1000 are never chosen.");

#define MAX_DEPTH 16

struct cgroup_setting {
	__s32 priority;	/* lower dies first */
	__u32 protected;	/* non-zero: only when nothing unprotected is killable */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct cgroup_setting);
} cgroup_settings SEC(".maps");

__s32 default_priority = 0;
BPFOOM_TUNABLE(default_priority,
	       "the priority of leaves with no setting on their path to the OOMing memcg");
const volatile bool exclude_page_cache = true;
BPFOOM_TUNABLE(exclude_page_cache,
	       "rank leaves by usage minus page cache (false: whole usage)");
__u64 victim_wait_ms = 5000;
BPFOOM_TUNABLE_RANGE(victim_wait_ms, 0, 3600000,
		     "how long (ms) to wait for a victim to exit before choosing another");

#include "policy_event.h"
#include "policy_scope.h"
#include "policy_leaves.h"
#include "policy_kill.h"
#include "policy_granularity.h"

struct priority_choice {
	__u64 id;
	__u64 size;
	__s32 priority;
	bool protected;
	__u32 candidates;
};

struct priority_choice best;
struct cgroup_setting found_setting;

/* The setting found for the parent of the last leaf walked: its siblings share it. */
__u64 parent_id_seen;
struct cgroup_setting parent_setting_seen;

/*
 * The setting of leaf memcg `css`: its own entry or its nearest ancestor's at
 * or below `root_level`.  In cgroup v2 a memcg's parent css is its parent
 * cgroup's, so the walk up meets every ancestor; plain reads, under RCU.
 * Leaves come in walk order, siblings together: what the walk above the
 * leaf found is kept for the next sibling (one lookup per leaf, not one per
 * level).  choose_by_priority() clears it per OOM (settings may change).
 */
static void setting_of(struct cgroup_subsys_state *css, int root_level)
{
	struct cgroup_setting *entry;
	__u64 id, parent_id;
	int step;

	id = css->cgroup->kn->id;
	entry = bpf_map_lookup_elem(&cgroup_settings, &id);
	if (entry) {
		found_setting = *entry;
		return;
	}
	found_setting.priority = default_priority;
	found_setting.protected = 0;
	if (css->cgroup->level <= root_level || !css->parent)
		return;
	css = css->parent;
	parent_id = css->cgroup->kn->id;
	if (parent_id == parent_id_seen) {
		found_setting = parent_setting_seen;
		return;
	}
	bpf_for(step, 0, MAX_DEPTH) {
		if (!css || css->cgroup->level < root_level)
			break;
		id = css->cgroup->kn->id;
		entry = bpf_map_lookup_elem(&cgroup_settings, &id);
		if (entry) {
			found_setting = *entry;
			break;
		}
		css = css->parent;
	}
	parent_id_seen = parent_id;
	parent_setting_seen = found_setting;
}

/* Whether a leaf (protected, priority, size) should die before the current best. */
static bool worse_than_best(bool protected, __s32 priority, __u64 size)
{
	if (!best.id)
		return true;
	if (protected != best.protected)
		return !protected;
	if (priority != best.priority)
		return priority < best.priority;
	return size > best.size;
}

static void choose_by_priority(struct mem_cgroup *root)
{
	int root_level = root->css.cgroup->level;
	struct cgroup_subsys_state *css;
	struct bpf_iter_css it;
	struct leaf_stats st;
	bool protected;
	__u64 id;

	__builtin_memset(&best, 0, sizeof(best));
	__builtin_memset(&choice, 0, sizeof(choice));
	parent_id_seen = 0;
	leaf_walk_start(root, &it);
	while ((css = next_candidate_leaf(&it, exclude_page_cache, &st, &id))) {
		best.candidates++;
		setting_of(css, root_level);
		/* protected by its setting, or holding a task at or below protected_oom_score_adj */
		protected = found_setting.protected != 0 || leaf_is_protected(&st);
		explain_candidate(id, 0, st.usage, st.size, found_setting.priority, protected);
		if (protected)
			explain_exclusion(EXCLUDED_PROTECTED, id, 0);
		if (worse_than_best(protected, found_setting.priority, st.size)) {
			best.id = id;
			best.size = st.size;
			best.priority = found_setting.priority;
			best.protected = protected;
		}
	}
	leaf_walk_end(&it);
	if (best.protected) /* nothing unprotected: no protected leaf was passed over */
		__builtin_memset(&event.excluded[EXCLUDED_PROTECTED], 0,
				 sizeof(event.excluded[EXCLUDED_PROTECTED]));
}

static int decide(struct oom_control *oc, struct mem_cgroup *scope)
{
	if (wait_for_victim(oc, scope))
		return 1;
	choose_by_priority(scope);
	event.candidates = best.candidates;
	if (choice.exiting_id) {
		event.victim_cgroup_id = choice.exiting_id;
		event_send(ACTION_WAITING, REASON_VICTIM_EXITING);
		return 0;
	}
	event.victim_cgroup_id = best.id;
	event.usage_bytes = best.size;
	if (!best.id) {
		event_send(ACTION_DECLINED, REASON_NOTHING_KILLABLE);
		return 0;
	}
	if (!take_victims(oc, scope, best.id, 0, "bpfoom priority")) {
		event_send(ACTION_DECLINED, REASON_KILL_FAILED);
		return 0;
	}
	return report_taken(best.protected ? REASON_ONLY_PROTECTED : REASON_PRIORITY_CLASS);
}

SEC("struct_ops.s/handle_out_of_memory")
int BPF_PROG(priority_oom, struct bpf_oom_ctx *oom_ctx, struct oom_control *oc)
{
	return handle_oom(oom_ctx, oc);
}

SEC("struct_ops.s/handle_cgroup_offline")
void BPF_PROG(priority_offline, struct bpf_oom_ctx *oom_ctx, __u64 cgroup_id)
{
	bpf_map_delete_elem(&cgroup_settings, &cgroup_id);
	event_cgroup_offline(oom_ctx->cgroup_id, cgroup_id);
}

SEC(".struct_ops.link")
struct bpf_oom_ops priority = {
	.handle_out_of_memory = (void *)priority_oom,
	.handle_cgroup_offline = (void *)priority_offline,
	.name = "priority",
};
