// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A bpf_psi_ops whose triggers and reaction the test sets in globals before
 * attaching, and which records every callback, so a test can tell what the
 * kernel delivered and what the kfuncs answered.
 *
 * init() creates up to MAX_TRIGGERS triggers (cgroup id, resource, threshold,
 * window), then extra_triggers more copies of the first (to meet the kernel's
 * cap per ops), and returns init_ret.  Each event records the trigger's cgroup id
 * and, while oom_budget lasts, declares an OOM with bpf_out_of_memory(): in
 * the memcg of oom_cgroup_id, or system-wide with oom_system.  The cgroup
 * callbacks record the ids they are given; handle_cgroup_online also creates
 * online_triggers copies of the first trigger on the new cgroup (from the
 * kernel's work item, not from the attaching task).
 */
#include "bpfoom_kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define MAX_TRIGGERS 4
#define MAX_RECORDS 64
#define CONSTRAINT_LEN 32

/* The triggers init() creates, and what bpf_psi_create_trigger answered. */
__u64 trigger_cgroup_ids[MAX_TRIGGERS];
__u32 trigger_resources[MAX_TRIGGERS];
__u32 trigger_thresholds_us[MAX_TRIGGERS];
__u32 trigger_windows_us[MAX_TRIGGERS];
__u32 nr_triggers;
__s32 create_rets[MAX_TRIGGERS];
/* Copies of the first trigger: how many to create, made, and the first refusal. */
#define MAX_EXTRA_TRIGGERS 1100
__u32 extra_triggers;
__u32 extra_created;
__s32 extra_refusal;
/* Triggers each handle_cgroup_online creates on its cgroup, made, first refusal. */
#define MAX_ONLINE_TRIGGERS 64
__u32 online_triggers;
__u32 online_created;
__s32 online_refusal;
/* What init() returns: non-zero must fail the attach. */
__s32 init_ret;
__u32 inits;

/* The OOMs events declare: how many at most, where, and how. */
__u32 oom_budget;
__u64 oom_cgroup_id;
bool oom_system;
__u64 oom_flags;
__s32 oom_order;
/* A constant string (.rodata, set before load): the kfunc takes only those. */
const volatile char oom_constraint[CONSTRAINT_LEN];
/*
 * bpf_out_of_memory's answers, in order; calls started and finished.  Raising
 * oom_budget lets more events declare.
 */
__s32 oom_rets[MAX_RECORDS];
__u32 ooms;
__u32 oom_done;

/* Busy iterations per event, so a test can detach while handlers run. */
__u32 event_spin_loops;

/* Per callback, in order: the trigger's cgroup id, or the cgroup's. */
__u64 event_ids[MAX_RECORDS];
__u32 events;
__u64 online_ids[MAX_RECORDS];
__u32 onlines;
__u64 offline_ids[MAX_RECORDS];
__u32 offlines;

static void record(__u64 *ids, __u32 *count, __u64 id)
{
	__u32 slot = __sync_fetch_and_add(count, 1);

	if (slot < MAX_RECORDS)
		ids[slot] = id;
}

static long spin_once(__u64 index, void *ctx)
{
	return 0;
}

static int declare_oom(void)
{
	struct mem_cgroup *memcg = NULL;
	struct cgroup *cgrp = NULL;
	int ret;

	if (!oom_system) {
		cgrp = bpf_cgroup_from_id(oom_cgroup_id);
		if (!cgrp)
			return -2; /* -ENOENT: the test's cgroup is gone */
		memcg = bpf_get_mem_cgroup(&cgrp->self);
		if (!memcg) {
			bpf_cgroup_release(cgrp);
			return -2;
		}
	}
	ret = bpf_out_of_memory(memcg, oom_order, oom_flags, (const char *)oom_constraint);
	if (memcg)
		bpf_put_mem_cgroup(memcg);
	if (cgrp)
		bpf_cgroup_release(cgrp);
	return ret;
}

SEC("struct_ops.s/init")
int BPF_PROG(probe_init, struct bpf_psi *bpf_psi)
{
	__u32 i;

	inits++;
	for (i = 0; i < MAX_TRIGGERS && i < nr_triggers; i++)
		create_rets[i] = bpf_psi_create_trigger(bpf_psi, trigger_cgroup_ids[i],
							trigger_resources[i],
							trigger_thresholds_us[i],
							trigger_windows_us[i]);
	for (i = 0; i < MAX_EXTRA_TRIGGERS && i < extra_triggers; i++) {
		int ret = bpf_psi_create_trigger(bpf_psi, trigger_cgroup_ids[0],
						 trigger_resources[0],
						 trigger_thresholds_us[0],
						 trigger_windows_us[0]);

		if (!ret)
			extra_created++;
		else if (!extra_refusal)
			extra_refusal = ret;
	}
	return init_ret;
}

SEC("struct_ops.s/handle_psi_event")
void BPF_PROG(probe_psi_event, struct bpf_psi *bpf_psi, struct psi_trigger *t)
{
	__u32 slot;

	record(event_ids, &events, t->cgroup_id);
	if (event_spin_loops)
		bpf_loop(event_spin_loops, spin_once, NULL, 0);
	if (ooms >= oom_budget)
		return;
	slot = __sync_fetch_and_add(&ooms, 1);
	if (slot >= oom_budget || slot >= MAX_RECORDS) {
		/* a concurrent handler took the last one */
		__sync_fetch_and_sub(&ooms, 1);
		return;
	}
	oom_rets[slot] = declare_oom();
	__sync_fetch_and_add(&oom_done, 1);
}

SEC("struct_ops.s/handle_cgroup_online")
void BPF_PROG(probe_cgroup_online, struct bpf_psi *bpf_psi, __u64 cgroup_id)
{
	__u32 i;

	record(online_ids, &onlines, cgroup_id);
	for (i = 0; i < MAX_ONLINE_TRIGGERS && i < online_triggers; i++) {
		int ret = bpf_psi_create_trigger(bpf_psi, cgroup_id, trigger_resources[0],
						 trigger_thresholds_us[0],
						 trigger_windows_us[0]);

		if (!ret)
			__sync_fetch_and_add(&online_created, 1);
		else if (!online_refusal)
			online_refusal = ret;
	}
}

SEC("struct_ops.s/handle_cgroup_offline")
void BPF_PROG(probe_cgroup_offline, struct bpf_psi *bpf_psi, __u64 cgroup_id)
{
	record(offline_ids, &offlines, cgroup_id);
}

SEC(".struct_ops.link")
struct bpf_psi_ops psi_probe = {
	.init = (void *)probe_init,
	.handle_psi_event = (void *)probe_psi_event,
	.handle_cgroup_online = (void *)probe_cgroup_online,
	.handle_cgroup_offline = (void *)probe_cgroup_offline,
};
