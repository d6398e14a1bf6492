// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * largest_leaf: what it does is its BPFOOM_DESCRIPTION below (`bpfoom policies`
 * shows it); the details:
 *
 * While one of its victims is still exiting the policy waits for it instead of
 * killing again (policy_kill.h).  A granularity setting narrows the kill to
 * the leaf's largest task or widens it to a subtree (policy_granularity.h).  In a system-wide OOM the scope is every
 * leaf memcg of the machine.
 */
#include "bpfoom_kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "policy_meta.h"
#include <bpf/bpf_core_read.h>

#define POLICY_NAME "largest_leaf"
#define POLICY_DEFAULT_GRANULARITY GRANULARITY_CGROUP

char LICENSE[] SEC("license") = "Dual BSD/GPL";

BPFOOM_DESCRIPTION("kill every task of the largest leaf memcg under the OOMing one (usage minus "
		   "page cache), skipping leaves with a task whose oom_score_adj is -1000.");

const volatile bool exclude_page_cache = true;
BPFOOM_TUNABLE(exclude_page_cache,
	       "rank leaves by usage minus page cache (false: whole usage)");
__u64 min_victim_bytes = 0;
BPFOOM_TUNABLE_RANGE(min_victim_bytes, 0, 1ULL << 50,
		     "decline (let the next handler decide) when the largest leaf is smaller than "
		     "this");
__u64 victim_wait_ms = 5000;
BPFOOM_TUNABLE_RANGE(victim_wait_ms, 0, 3600000,
		     "how long (ms) to wait for a victim to exit before choosing another");

#include "policy_event.h"
#include "policy_scope.h"
#include "policy_leaves.h"
#include "policy_kill.h"
#include "policy_granularity.h"

static int decide(struct oom_control *oc, struct mem_cgroup *scope)
{
	if (wait_for_victim(oc, scope))
		return 1;
	choose_largest_leaf(scope, exclude_page_cache);
	event.candidates = choice.candidates;
	if (choice.exiting_id) {
		event.victim_cgroup_id = choice.exiting_id;
		event_send(ACTION_WAITING, REASON_VICTIM_EXITING);
		return 0;
	}
	event.victim_cgroup_id = choice.id;
	event.usage_bytes = choice.size;
	if (!choice.id) {
		event_send(ACTION_DECLINED, REASON_NOTHING_KILLABLE);
		return 0;
	}
	if (choice.size < min_victim_bytes) {
		event_send(ACTION_DECLINED, REASON_BELOW_MINIMUM);
		return 0;
	}
	if (!take_victims(oc, scope, choice.id, 0, "bpfoom largest_leaf")) {
		event_send(ACTION_DECLINED, REASON_KILL_FAILED);
		return 0;
	}
	return report_taken(REASON_LARGEST_LEAF);
}

SEC("struct_ops.s/handle_out_of_memory")
int BPF_PROG(largest_leaf_oom, struct bpf_oom_ctx *oom_ctx, struct oom_control *oc)
{
	return handle_oom(oom_ctx, oc);
}

SEC("struct_ops.s/handle_cgroup_offline")
void BPF_PROG(largest_leaf_offline, struct bpf_oom_ctx *oom_ctx, __u64 cgroup_id)
{
	event_cgroup_offline(oom_ctx->cgroup_id, cgroup_id);
}

SEC(".struct_ops.link")
struct bpf_oom_ops largest_leaf = {
	.handle_out_of_memory = (void *)largest_leaf_oom,
	.handle_cgroup_offline = (void *)largest_leaf_offline,
	.name = "largest_leaf",
};
