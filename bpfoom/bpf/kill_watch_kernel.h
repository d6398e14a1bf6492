/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The few kernel types the kill watcher reads, written by hand with CO-RE
 * (preserve_access_index): only the names must match the running kernel,
 * never the layouts.  Fields that only our patched kernels have
 * (oom_control.bpf_policy_name, .bpf_constraint, CONSTRAINT_BPF) are read
 * behind bpf_core_field_exists / bpf_core_enum_value_exists, so the same
 * object loads on a stock kernel and reports "default" there.
 */
#ifndef BPFOOM_KILL_WATCH_KERNEL_H
#define BPFOOM_KILL_WATCH_KERNEL_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed char __s8;
typedef short __s16;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef __u32 uid_t;
typedef _Bool bool;
#define true 1
#define false 0
#define NULL ((void *)0)

/* UAPI values (include/uapi/linux/bpf.h); stable ABI. */
enum {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_RINGBUF = 27,
};
enum {
	BPF_ANY = 0,
};

#define TASK_COMM_LEN 16

struct kernfs_node {
	__u64 id; /* the cgroup id for a cgroup's directory */
} __attribute__((preserve_access_index));

struct cgroup {
	struct kernfs_node *kn;
} __attribute__((preserve_access_index));

struct cgroup_subsys_state {
	struct cgroup *cgroup;
} __attribute__((preserve_access_index));

struct mem_cgroup {
	struct cgroup_subsys_state css;
} __attribute__((preserve_access_index));

struct css_set {
	struct cgroup *dfl_cgrp; /* the task's cgroup2 cgroup */
} __attribute__((preserve_access_index));

struct signal_struct {
	short oom_score_adj;
} __attribute__((preserve_access_index));

struct task_struct {
	int pid;
	int tgid;
	char comm[TASK_COMM_LEN];
	struct css_set *cgroups;
	struct signal_struct *signal;
} __attribute__((preserve_access_index));

enum oom_constraint {
	CONSTRAINT_NONE,
	CONSTRAINT_CPUSET,
	CONSTRAINT_MEMORY_POLICY,
	CONSTRAINT_MEMCG,
	CONSTRAINT_BPF,
};

struct oom_control {
	struct mem_cgroup *memcg; /* NULL for a system-wide OOM */
	enum oom_constraint constraint;
	bool bpf_memory_freed;
	const char *bpf_policy_name; /* the running BPF handler's name, else NULL */
	const char *bpf_constraint;  /* CONSTRAINT_BPF: the declaring handler's text */
} __attribute__((preserve_access_index));

#endif
