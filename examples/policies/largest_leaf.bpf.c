// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * largest_leaf: kill every task of the largest leaf memcg under the OOMing
 * one (usage minus page cache), skipping leaves with a task whose
 * oom_score_adj is -1000.
 *
 * While an earlier victim is still exiting the policy waits (returns 0, and
 * the kernel, seeing the victim, kills no one) instead of killing again.
 * A system-wide OOM is left to the kernel.
 */
#include "bpfoom_kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#define POLICY_NAME "largest_leaf"
#include "policy_event.h"
#include "policy_leaves.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* tunable: rank leaves by usage minus page cache (false: whole usage) */
const volatile bool exclude_page_cache = true;
/* tunable: decline (let the next handler decide) when the largest leaf is smaller than this */
__u64 min_victim_bytes = 0;

SEC("struct_ops.s/handle_out_of_memory")
int BPF_PROG(largest_leaf_oom, struct bpf_oom_ctx *oom_ctx, struct oom_control *oc)
{
	struct policy_event e;
	struct leaf_choice c;

	event_init(&e, oom_ctx, oc);
	if (!oc->memcg) {
		event_send(&e, ACTION_DECLINED, REASON_SYSTEM_WIDE_OOM);
		return 0;
	}
	choose_largest_leaf(oc->memcg, exclude_page_cache, &c);
	e.candidates = c.candidates;
	if (c.exiting_id) {
		e.victim_cgroup_id = c.exiting_id;
		event_send(&e, ACTION_WAITING, REASON_VICTIM_EXITING);
		return 0;
	}
	e.victim_cgroup_id = c.id;
	e.usage_bytes = c.size;
	if (!c.id) {
		event_send(&e, ACTION_DECLINED, REASON_NOTHING_KILLABLE);
		return 0;
	}
	if (c.size < min_victim_bytes) {
		event_send(&e, ACTION_DECLINED, REASON_BELOW_MINIMUM);
		return 0;
	}
	if (!kill_leaf(oc, c.id, &e, "bpfoom largest_leaf")) {
		event_send(&e, ACTION_DECLINED, REASON_KILL_FAILED);
		return 0;
	}
	event_send(&e, ACTION_KILLED, REASON_LARGEST_LEAF);
	return 1;
}

SEC(".struct_ops.link")
struct bpf_oom_ops largest_leaf = {
	.handle_out_of_memory = (void *)largest_leaf_oom,
	.name = "largest_leaf",
};
