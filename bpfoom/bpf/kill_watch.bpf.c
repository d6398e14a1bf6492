// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * kill_watch: report every OOM victim the kernel marks, whoever chose it (a
 * BPF policy, or the kernel's own killer), and every OOM that ended without
 * one, so that no OOM goes unseen.
 *
 * out_of_memory() runs with oom_lock held, one OOM at a time, and every
 * victim is marked (tracepoint oom/mark_victim) by the task running it:
 * fentry remembers the oom_control per task, the tracepoint reads the policy
 * running at that moment (oc->bpf_policy_name, set only while a bpf_oom_ops
 * handler runs, so a kill from bpf_oom_kill_process carries its name and the
 * kernel's kill after the chain carries none), and fexit reports an OOM that
 * marked nobody.  Records the ring buffer has no room for are counted in
 * events_dropped, never silently lost.
 */
#include "kill_watch_kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "kill_record.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} kills SEC(".maps");

/* Records the ring buffer had no room for. */
__u64 events_dropped;
/* OOMs seen since load; each record carries the number of its own. */
__u64 ooms_seen;

struct oom_in_progress {
	__u64 oc;	/* struct oom_control *, read with CO-RE probes */
	__u64 seq;
	__u64 oom_cgroup_id;
	__u32 victims;
	__u32 reserved;
};

/* Keyed by the thread running out_of_memory(); oom_lock makes it one at a time. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, struct oom_in_progress);
} running SEC(".maps");

static __u16 constraint_code(struct oom_control *oc)
{
	int value = BPF_CORE_READ(oc, constraint);

	if (value == bpf_core_enum_value(enum oom_constraint, CONSTRAINT_NONE))
		return KC_NONE;
	if (value == bpf_core_enum_value(enum oom_constraint, CONSTRAINT_CPUSET))
		return KC_CPUSET;
	if (value == bpf_core_enum_value(enum oom_constraint, CONSTRAINT_MEMORY_POLICY))
		return KC_MEMORY_POLICY;
	if (value == bpf_core_enum_value(enum oom_constraint, CONSTRAINT_MEMCG))
		return KC_MEMCG;
	if (bpf_core_enum_value_exists(enum oom_constraint, CONSTRAINT_BPF) &&
	    value == bpf_core_enum_value(enum oom_constraint, CONSTRAINT_BPF))
		return KC_BPF;
	return KC_UNKNOWN;
}

static struct kill_record *reserve(__u16 kind)
{
	struct kill_record *rec = bpf_ringbuf_reserve(&kills, sizeof(*rec), 0);

	if (!rec) {
		__sync_fetch_and_add(&events_dropped, 1);
		return NULL;
	}
	__builtin_memset(rec, 0, sizeof(*rec));
	rec->schema = KILL_RECORD_SCHEMA;
	rec->size = sizeof(*rec);
	rec->kind = kind;
	rec->time_ns = bpf_ktime_get_ns();
	return rec;
}

SEC("fentry/out_of_memory")
int BPF_PROG(oom_started, struct oom_control *oc)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct oom_in_progress oom = {
		.oc = (__u64)oc,
		.seq = __sync_fetch_and_add(&ooms_seen, 1) + 1,
		.oom_cgroup_id = BPF_CORE_READ(oc, memcg, css.cgroup, kn, id),
	};

	bpf_map_update_elem(&running, &tid, &oom, BPF_ANY);
	return 0;
}

SEC("tp_btf/mark_victim")
int BPF_PROG(victim_marked, struct task_struct *task, uid_t uid)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct oom_in_progress *oom = bpf_map_lookup_elem(&running, &tid);
	struct oom_control *oc;
	struct kill_record *rec;
	const char *text;

	if (oom)
		oom->victims++;
	rec = reserve(RECORD_KILL);
	if (!rec)
		return 0;
	rec->pid = BPF_CORE_READ(task, pid);
	rec->tgid = BPF_CORE_READ(task, tgid);
	rec->uid = uid;
	rec->oom_score_adj = BPF_CORE_READ(task, signal, oom_score_adj);
	rec->victim_cgroup_id = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
	BPF_CORE_READ_STR_INTO(&rec->comm, task, comm);
	if (oom) {
		oc = (struct oom_control *)oom->oc;
		rec->oom_seq = oom->seq;
		rec->victim_nr = oom->victims;
		rec->oom_cgroup_id = oom->oom_cgroup_id;
		rec->constraint = constraint_code(oc);
		if (bpf_core_field_exists(oc->bpf_policy_name)) {
			text = BPF_CORE_READ(oc, bpf_policy_name);
			if (text) {
				rec->by_bpf = 1;
				bpf_probe_read_kernel_str(rec->policy, sizeof(rec->policy), text);
			}
		}
		if (rec->constraint == KC_BPF && bpf_core_field_exists(oc->bpf_constraint)) {
			text = BPF_CORE_READ(oc, bpf_constraint);
			if (text)
				bpf_probe_read_kernel_str(rec->constraint_text,
							  sizeof(rec->constraint_text), text);
		}
	}
	bpf_ringbuf_submit(rec, 0);
	return 0;
}

SEC("fexit/out_of_memory")
int BPF_PROG(oom_ended, struct oom_control *oc, bool handled)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid;
	struct oom_in_progress *oom = bpf_map_lookup_elem(&running, &tid);
	struct kill_record *rec;

	if (!oom)
		return 0;
	if (!oom->victims) {
		rec = reserve(RECORD_OOM_NO_KILL);
		if (rec) {
			rec->pid = tid;
			rec->tgid = pid_tgid >> 32;
			rec->oom_seq = oom->seq;
			rec->oom_cgroup_id = oom->oom_cgroup_id;
			rec->constraint = constraint_code(oc);
			rec->result = handled;
			bpf_get_current_comm(rec->comm, sizeof(rec->comm));
			bpf_ringbuf_submit(rec, 0);
		}
	}
	bpf_map_delete_elem(&running, &tid);
	return 0;
}
