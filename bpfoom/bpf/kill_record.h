/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The record the kill watcher writes to its `kills` ring buffer, decoded by
 * bpfoom/kill_events.py.  `schema` versions the layout: a reader refuses a
 * schema it does not know, and a new field means a new schema number.
 */
#ifndef BPFOOM_KILL_RECORD_H
#define BPFOOM_KILL_RECORD_H

#define KILL_RECORD_SCHEMA 1
#define KILL_POLICY_LEN 64	/* BPF_OOM_NAME_MAX_LEN */
#define KILL_CONSTRAINT_LEN 32

enum kill_record_kind {
	RECORD_KILL = 1,	/* the kernel marked a task as an OOM victim */
	RECORD_OOM_NO_KILL = 2,	/* out_of_memory() returned without marking one */
};

/* Stable codes for enum oom_constraint, whose values the kernel may renumber. */
enum kill_constraint {
	KC_NONE = 0,
	KC_CPUSET = 1,
	KC_MEMORY_POLICY = 2,
	KC_MEMCG = 3,
	KC_BPF = 4,	/* declared by a BPF handler (bpf_out_of_memory) */
	KC_UNKNOWN = 15,
};

struct kill_record {
	__u16 schema;		/* KILL_RECORD_SCHEMA */
	__u16 size;		/* sizeof(struct kill_record) */
	__u16 kind;		/* enum kill_record_kind */
	__u16 constraint;	/* enum kill_constraint */
	__u64 time_ns;		/* CLOCK_MONOTONIC */
	__u64 oom_seq;		/* which OOM (counted from 1 since load); 0: outside any OOM seen */
	__u64 oom_cgroup_id;	/* the memcg that ran out of memory (0: the whole system) */
	__u64 victim_cgroup_id;	/* the victim's cgroup2 id (kill only) */
	__s32 pid;		/* kill: the victim thread; no kill: the task that hit the OOM */
	__s32 tgid;
	__u32 uid;		/* kill: the victim's uid */
	__s16 oom_score_adj;
	__u8 by_bpf;		/* kill: a BPF handler was running (policy holds its name) */
	__u8 result;		/* no kill: out_of_memory()'s return (1: the OOM counts as handled) */
	__u32 victim_nr;	/* kill: this victim's number within its OOM, from 1 */
	__u32 reserved;
	char comm[16];
	char policy[KILL_POLICY_LEN];	/* the handler's name, empty for the kernel's killer */
	char constraint_text[KILL_CONSTRAINT_LEN];	/* KC_BPF: the declaring handler's text */
};

#endif
