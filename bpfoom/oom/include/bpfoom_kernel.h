/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The kernel types and kfuncs bpfoom's BPF programs use, declared by hand:
 * one header for the shipped policies, the kill watcher, the memcg_stats
 * iterator and the test programs (tests/bpf/oom), instead of a vmlinux.h
 * dumped from one build.
 *
 * Every struct carries preserve_access_index, so each field access is a CO-RE
 * relocation resolved against the running kernel's BTF at load: only the
 * names must match the kernel, not the layouts.  That keeps the committed
 * objects independent of which kernel build (patch set, config) produced a
 * vmlinux.h, and the same object loads on every kernel with bpf_oom_ops.
 * Fields only our patched kernels have (oom_control.bpf_policy_name,
 * .bpf_constraint, CONSTRAINT_BPF) are read behind bpf_core_field_exists /
 * bpf_core_enum_value_exists by whoever needs them to load anywhere.
 */
#ifndef BPFOOM_KERNEL_H
#define BPFOOM_KERNEL_H

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

/* UAPI values (include/uapi/linux/bpf.h): stable ABI. */
enum {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_RINGBUF = 27,
};
enum {
	BPF_ANY = 0,
};
enum {
	BPF_F_MMAPABLE = (1U << 10),
};
enum {
	BPF_CGROUP_ITER_DESCENDANTS_PRE = 2,
};

/* include/linux/cgroup.h: walk thread-group leaders only. */
#define CSS_TASK_ITER_PROCS (1U << 0)
/* include/uapi/linux/oom.h */
#define OOM_SCORE_ADJ_MIN (-1000)
/* include/linux/sched.h */
#define PF_KTHREAD 0x00200000
#define TASK_COMM_LEN 16
enum bpf_oom_limits {
	BPF_OOM_NAME_MAX_LEN = 64, /* the kernel's enum, in its BTF */
};
/* x86-64, arm64 (4K pages): rss counters count pages. */
#define POLICY_PAGE_SIZE 4096ULL

struct kernfs_node {
	__u64 id; /* a cgroup directory's inode number: the cgroup id */
	const char *name;
} __attribute__((preserve_access_index));

struct cgroup;

struct cgroup_subsys_state {
	struct cgroup *cgroup;
	struct cgroup_subsys_state *parent;
} __attribute__((preserve_access_index));

/*
 * include/linux/psi_types.h: u64 total[NR_PSI_AGGREGATORS][NR_PSI_STATES - 1]
 * and unsigned long avg[NR_PSI_STATES - 1][3].  Kernel BTF flattens the two
 * dimensions into one array (so must we, for CO-RE to match) and the sizes
 * depend on the config: only the offsets are relocated, indexes computed.
 */
struct psi_group {
	bool enabled;
	__u64 total[1];
	unsigned long avg[1];
} __attribute__((preserve_access_index));

struct cgroup {
	struct cgroup_subsys_state self;
	struct kernfs_node *kn;
	int level;
	int nr_descendants;
	struct psi_group *psi;
} __attribute__((preserve_access_index));

struct page_counter {
	unsigned long max;
} __attribute__((preserve_access_index));

struct mem_cgroup {
	struct cgroup_subsys_state css;
	struct page_counter memory;
	bool oom_group; /* memory.oom.group */
} __attribute__((preserve_access_index));

struct css_set {
	struct cgroup *dfl_cgrp; /* the task's cgroup2 cgroup */
} __attribute__((preserve_access_index));

struct percpu_counter {
	__s64 count; /* the approximate total, as get_mm_counter() reads it */
} __attribute__((preserve_access_index));

struct mm_struct {
	struct percpu_counter rss_stat[4];
} __attribute__((preserve_access_index));

/* mm->rss_stat indexes (an anonymous enum in the kernel, stable since 4.x). */
#define MM_FILEPAGES 0
#define MM_ANONPAGES 1
#define MM_SWAPENTS 2
#define MM_SHMEMPAGES 3

/* Values libbpf relocates to the running kernel's numbers. */
enum node_stat_item {
	NR_FILE_PAGES = 0,
	NR_ANON_MAPPED = 1,
};
enum memcg_memory_event {
	MEMCG_OOM = 0,
	MEMCG_OOM_KILL = 1,
};
enum psi_states {
	PSI_MEM_SOME = 0,
	PSI_MEM_FULL = 1,
};

struct signal_struct {
	short oom_score_adj;
} __attribute__((preserve_access_index));

struct task_struct {
	unsigned int flags;
	int exit_state; /* non-zero from exit_notify() on: the memory is gone */
	int pid;
	int tgid;
	char comm[TASK_COMM_LEN];
	__u64 start_time; /* CLOCK_MONOTONIC ns at fork */
	struct mm_struct *mm;
	struct css_set *cgroups;
	struct signal_struct *signal;
} __attribute__((preserve_access_index));

/* Values libbpf relocates to the running kernel's numbers (CONSTRAINT_BPF: ours only). */
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

/* spec section 3 */
struct bpf_oom_ctx {
	__u64 cgroup_id; /* where this ops is attached; 0 = system-wide */
} __attribute__((preserve_access_index));

/* The struct_ops value type; libbpf matches it to the kernel's by name. */
struct bpf_oom_ops {
	int (*handle_out_of_memory)(struct bpf_oom_ctx *ctx, struct oom_control *oc);
	void (*handle_cgroup_offline)(struct bpf_oom_ctx *ctx, __u64 cgroup_id);
	char name[BPF_OOM_NAME_MAX_LEN];
};

/* PSI (spec section 5); include/linux/psi_types.h: the resources, stable since PSI began */
enum psi_res {
	PSI_IO = 0,
	PSI_MEM = 1,
	PSI_CPU = 2,
};
/* The kernel's enum (in its BTF since issue 22), declared by hand like the rest */
enum bpf_psi_flags {
	BPF_PSI_FULL = 0x80000000U,
};

/* bpf_out_of_memory() flags (spec section 4) */
enum bpf_oom_flags {
	BPF_OOM_FLAGS_WAIT_ON_OOM_LOCK = 1 << 0,
	BPF_OOM_FLAGS_LAST = 1 << 1,
};

struct psi_trigger {
	__u64 cgroup_id; /* 0 for a system-wide trigger */
} __attribute__((preserve_access_index));

/*
 * Opaque to programs, but defined: libbpf only accepts a kfunc whose pointer
 * arguments name a struct where the kernel has one, not a forward declaration.
 */
struct bpf_psi {
	int opaque;
};

struct bpf_psi_ops {
	int (*init)(struct bpf_psi *bpf_psi);
	void (*handle_psi_event)(struct bpf_psi *bpf_psi, struct psi_trigger *t);
	void (*handle_cgroup_online)(struct bpf_psi *bpf_psi, __u64 cgroup_id);
	void (*handle_cgroup_offline)(struct bpf_psi *bpf_psi, __u64 cgroup_id);
	struct bpf_psi *bpf_psi;
};

/*
 * A struct_ops every kernel registers, for test programs that must run (or be
 * refused) outside bpf_oom_ops: include/net/tcp.h, the members they set.
 */
struct sock;

struct tcp_congestion_ops {
	void (*init)(struct sock *sk);
	__u32 (*ssthresh)(struct sock *sk);
	void (*cong_avoid)(struct sock *sk, __u32 ack, __u32 acked);
	__u32 (*undo_cwnd)(struct sock *sk);
	char name[16];
};

/* An iter/cgroup program's context (kernel/bpf/bpf_iter.c, cgroup_iter.c). */
struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
	__u64 session_id;
	__u64 seq_num;
} __attribute__((preserve_access_index));

struct bpf_iter__cgroup {
	struct bpf_iter_meta *meta;
	struct cgroup *cgroup;
} __attribute__((preserve_access_index));

/* Opaque iterator state (kernel/bpf/cgroup_iter.c, task_iter.c, bpf_iter.c). */
struct bpf_iter_css {
	__u64 __opaque[3];
} __attribute__((aligned(8)));

struct bpf_iter_css_task {
	__u64 __opaque[1];
} __attribute__((aligned(8)));

struct bpf_iter_num {
	__u64 __opaque[1];
} __attribute__((aligned(8)));

/* __ksym and the helpers need the types above. */
#include <bpf/bpf_helpers.h>

/* OOM kfuncs (spec section 4) */
extern int bpf_oom_kill_process(struct oom_control *oc, struct task_struct *task,
				const char *message__str) __ksym;
extern bool bpf_task_is_oom_victim(struct task_struct *task) __ksym;
extern int bpf_out_of_memory(struct mem_cgroup *memcg__nullable, int order, __u64 flags,
			     const char *constraint_text__str) __ksym;
extern int bpf_psi_create_trigger(struct bpf_psi *bpf_psi, __u64 cgroup_id, __u32 resource,
				  __u32 threshold_us, __u32 window_us) __ksym;

/* memcg kfuncs (mm/bpf_memcontrol.c) */
extern struct mem_cgroup *bpf_get_root_mem_cgroup(void) __ksym;
extern struct mem_cgroup *bpf_get_mem_cgroup(struct cgroup_subsys_state *css) __ksym;
extern void bpf_put_mem_cgroup(struct mem_cgroup *memcg) __ksym;
extern unsigned long bpf_mem_cgroup_usage(struct mem_cgroup *memcg) __ksym;
extern unsigned long bpf_mem_cgroup_page_state(struct mem_cgroup *memcg, int idx) __ksym;
extern unsigned long bpf_mem_cgroup_memory_events(struct mem_cgroup *memcg,
						  enum memcg_memory_event event) __ksym;
extern void bpf_mem_cgroup_flush_stats(struct mem_cgroup *memcg) __ksym;

/* generic kfuncs (kernel/bpf/helpers.c, cgroup_iter.c, task_iter.c) */
extern struct cgroup *bpf_cgroup_from_id(__u64 cgid) __ksym;
extern struct cgroup *bpf_cgroup_ancestor(struct cgroup *cgrp, int level) __ksym;
extern void bpf_cgroup_release(struct cgroup *cgrp) __ksym;
extern struct task_struct *bpf_task_from_pid(__s32 pid) __ksym;
extern struct task_struct *bpf_task_acquire(struct task_struct *p) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;
extern void bpf_rcu_read_lock(void) __ksym;
extern void bpf_rcu_read_unlock(void) __ksym;
extern int bpf_iter_css_new(struct bpf_iter_css *it, struct cgroup_subsys_state *start,
			    unsigned int flags) __ksym;
extern struct cgroup_subsys_state *bpf_iter_css_next(struct bpf_iter_css *it) __ksym;
extern void bpf_iter_css_destroy(struct bpf_iter_css *it) __ksym;
extern int bpf_iter_css_task_new(struct bpf_iter_css_task *it,
				 struct cgroup_subsys_state *css, unsigned int flags) __ksym;
extern struct task_struct *bpf_iter_css_task_next(struct bpf_iter_css_task *it) __ksym;
extern void bpf_iter_css_task_destroy(struct bpf_iter_css_task *it) __ksym;

/* The cgroup id of a memcg. */
#define memcg_cgroup_id(memcg) ((memcg)->css.cgroup->kn->id)

#endif
