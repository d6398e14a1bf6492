// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* observe: what it does is its BPFOOM_DESCRIPTION below (`bpfoom policies` shows it). */
#include "bpfoom_kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "policy_meta.h"
#include <bpf/bpf_core_read.h>

#define POLICY_NAME "observe"
#define POLICY_DEFAULT_GRANULARITY GRANULARITY_CGROUP
#define POLICY_DRY_RUN

char LICENSE[] SEC("license") = "Dual BSD/GPL";

BPFOOM_DESCRIPTION("a dry run of largest_leaf.  On each OOM it reports the leaf memcg and the "
		   "tasks largest_leaf would kill, then returns 0, so the kernel's own killer "
		   "(or the next policy in the chain) decides as if it were absent. Compare its "
		   "events with the kernel's kills to see what a policy would change. Its events"
		   " carry largest_leaf's explanation (candidates, exclusions) and honour the "
		   "same granularity settings (policy_granularity.h).");

const volatile bool exclude_page_cache = true;
BPFOOM_TUNABLE(exclude_page_cache,
	       "rank leaves by usage minus page cache (false: whole usage), as largest_leaf "
	       "does");

#include "policy_event.h"
#include "policy_scope.h"
#include "policy_leaves.h"
#include "policy_granularity.h"

static int decide(struct oom_control *oc, struct mem_cgroup *scope)
{
	choose_largest_leaf(scope, exclude_page_cache);
	event.candidates = choice.candidates;
	if (choice.exiting_id) {
		event.victim_cgroup_id = choice.exiting_id;
		event_send(ACTION_WAITING, REASON_VICTIM_EXITING);
		return 0;
	}
	if (!choice.id) {
		event_send(ACTION_DECLINED, REASON_NOTHING_KILLABLE);
		return 0;
	}
	event.victim_cgroup_id = choice.id;
	event.usage_bytes = choice.size;
	take_victims(oc, scope, choice.id, 0, "");
	event_send(ACTION_DRY_RUN, REASON_LARGEST_LEAF);
	return 0;
}

SEC("struct_ops.s/handle_out_of_memory")
int BPF_PROG(observe_oom, struct bpf_oom_ctx *oom_ctx, struct oom_control *oc)
{
	return handle_oom(oom_ctx, oc);
}

SEC("struct_ops.s/handle_cgroup_offline")
void BPF_PROG(observe_offline, struct bpf_oom_ctx *oom_ctx, __u64 cgroup_id)
{
	event_cgroup_offline(oom_ctx->cgroup_id, cgroup_id);
}

SEC(".struct_ops.link")
struct bpf_oom_ops observe = {
	.handle_out_of_memory = (void *)observe_oom,
	.handle_cgroup_offline = (void *)observe_offline,
	.name = "observe",
};
