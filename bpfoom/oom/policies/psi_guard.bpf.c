// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * psi_guard: what it does is its BPFOOM_DESCRIPTION below (`bpfoom policies`
 * shows it); the details:
 *
 * Guards the cgroups listed in guarded_cgroups when attached, and every cgroup
 * created later directly under guard_children_of.  A trigger lasts until the
 * handler is detached or its cgroup is deleted.
 */
#include "bpfoom_kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "policy_meta.h"

#define POLICY_NAME "psi_guard"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

BPFOOM_DESCRIPTION("watch memory pressure (\"full\" stalls) of chosen cgroups and, when a cgroup"
		   " stalls for threshold_us within window_us, declare an OOM in its memcg with "
		   "constraint text BPF_PSI_GUARD, so the memcg's OOM policy (or the kernel's "
		   "killer) chooses a victim before the workload thrashes.");

#define MAX_GUARDED 16

__u64 guarded_cgroups[MAX_GUARDED];
BPFOOM_TUNABLE(guarded_cgroups,
	       "ids of the cgroups to guard from attach on (a 0 ends the list)");
__u64 guard_children_of = 0;
BPFOOM_TUNABLE(guard_children_of,
	       "also guard each cgroup created directly under this one (0: none)");
__u32 threshold_us = 100000;
BPFOOM_TUNABLE_RANGE(threshold_us, 1, 10000000,
		     "microseconds of \"full\" memory stall within a window that declare the OOM");
__u32 window_us = 1000000;
BPFOOM_TUNABLE_RANGE(window_us, 500000, 10000000,
		     "the window, in microseconds (as memory.pressure triggers take it)");
__u32 quiet_after_oom_ms = 10000;
BPFOOM_TUNABLE_RANGE(quiet_after_oom_ms, 0, 600000,
		     "milliseconds after a declared OOM that freed memory in which no other is "
		     "declared: the stall the victim's exit leaves behind is not a new shortage");

/* When the last declared OOM freed memory (0: never); racing handlers may both declare. */
static __u64 last_freed_ns;


#include "policy_event.h"

static int guard(struct bpf_psi *bpf_psi, __u64 cgroup_id)
{
	return bpf_psi_create_trigger(bpf_psi, cgroup_id, PSI_MEM | BPF_PSI_FULL,
				      threshold_us, window_us);
}

SEC("struct_ops.s/init")
int BPF_PROG(psi_guard_init, struct bpf_psi *bpf_psi)
{
	__u64 id;
	int i, err;

	bpf_for(i, 0, MAX_GUARDED) {
		id = guarded_cgroups[i & (MAX_GUARDED - 1)];
		if (!id)
			break;
		err = guard(bpf_psi, id);
		if (err)
			return err; /* the attach fails: better than guarding less than asked */
	}
	return 0;
}

SEC("struct_ops.s/handle_psi_event")
void BPF_PROG(psi_guard_event, struct bpf_psi *bpf_psi, struct psi_trigger *t)
{
	__u64 id = t->cgroup_id;
	struct mem_cgroup *memcg;
	struct cgroup *cgrp;
	int ret = -2; /* -ENOENT: the cgroup is gone */
	__u64 freed_at = last_freed_ns;

	if (freed_at && bpf_ktime_get_ns() - freed_at < (__u64)quiet_after_oom_ms * 1000000) {
		event_send_unlocked(ACTION_DECLINED, REASON_QUIET_AFTER_OOM, 0, id, 0, 0);
		return;
	}
	cgrp = bpf_cgroup_from_id(id);
	if (cgrp) {
		memcg = bpf_get_mem_cgroup(&cgrp->self);
		if (memcg) {
			ret = bpf_out_of_memory(memcg, 0, BPF_OOM_FLAGS_WAIT_ON_OOM_LOCK,
						"BPF_PSI_GUARD");
			if (ret > 0)
				last_freed_ns = bpf_ktime_get_ns();
			bpf_put_mem_cgroup(memcg);
		}
		bpf_cgroup_release(cgrp);
	}
	event_send_unlocked(ACTION_DECLARED_OOM, REASON_MEMORY_PRESSURE, 0, id, 0,
			    ret < 0 ? ret : 0);
}

SEC("struct_ops.s/handle_cgroup_online")
void BPF_PROG(psi_guard_online, struct bpf_psi *bpf_psi, __u64 cgroup_id)
{
	struct cgroup *cgrp, *parent;
	int level;

	if (!guard_children_of)
		return;
	cgrp = bpf_cgroup_from_id(cgroup_id);
	if (!cgrp)
		return;
	level = cgrp->level;
	parent = level > 0 ? bpf_cgroup_ancestor(cgrp, level - 1) : NULL;
	bpf_cgroup_release(cgrp);
	if (!parent)
		return;
	if (parent->kn->id == guard_children_of)
		guard(bpf_psi, cgroup_id);
	bpf_cgroup_release(parent);
}

SEC(".struct_ops.link")
struct bpf_psi_ops psi_guard = {
	.init = (void *)psi_guard_init,
	.handle_psi_event = (void *)psi_guard_event,
	.handle_cgroup_online = (void *)psi_guard_online,
};
