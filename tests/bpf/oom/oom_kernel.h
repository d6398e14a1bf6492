/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The kernel types and kfuncs the BPF OOM test policies use, written by hand
 * instead of a vmlinux.h dumped from one build: that file is not committed
 * and changes with every patch.  preserve_access_index makes every field
 * access a CO-RE relocation against the running kernel's BTF, so only the
 * names here must match the kernel, not the layouts.
 */
#ifndef BPFOOM_OOM_KERNEL_H
#define BPFOOM_OOM_KERNEL_H

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
typedef _Bool bool;
#define true 1
#define false 0
#define NULL ((void *)0)

/* UAPI values (include/uapi/linux/bpf.h); stable ABI. */
enum {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
};
enum {
	BPF_ANY = 0,
};
enum {
	BPF_CGROUP_ITER_DESCENDANTS_PRE = 2,
};

/* include/linux/cgroup.h: walk only thread-group leaders. */
#define CSS_TASK_ITER_PROCS (1U << 0)
/* include/uapi/linux/oom.h */
#define OOM_SCORE_ADJ_MIN (-1000)
#define BPF_OOM_NAME_MAX_LEN 64

struct kernfs_node {
	__u64 id; /* the cgroup id for a cgroup's directory */
} __attribute__((preserve_access_index));

struct cgroup;

struct cgroup_subsys_state {
	struct cgroup *cgroup;
} __attribute__((preserve_access_index));

struct cgroup {
	struct cgroup_subsys_state self;
	struct kernfs_node *kn;
	int nr_descendants;
} __attribute__((preserve_access_index));

struct mem_cgroup {
	struct cgroup_subsys_state css;
} __attribute__((preserve_access_index));

struct signal_struct {
	short oom_score_adj;
} __attribute__((preserve_access_index));

struct task_struct {
	int pid;
	int tgid;
	struct signal_struct *signal;
} __attribute__((preserve_access_index));

struct oom_control {
	struct mem_cgroup *memcg; /* NULL for a system-wide OOM */
	bool bpf_memory_freed;
} __attribute__((preserve_access_index));

/* The value names libbpf relocates to the kernel's numbers. */
enum node_stat_item {
	NR_FILE_PAGES = 0,
};

/* spec section 3 */
struct bpf_oom_ctx {
	__u64 cgroup_id;
} __attribute__((preserve_access_index));

/*
 * The struct_ops value type: libbpf matches it to the kernel's bpf_oom_ops by
 * name and copies members by name.
 */
struct bpf_oom_ops {
	int (*handle_out_of_memory)(struct bpf_oom_ctx *ctx, struct oom_control *oc);
	void (*handle_cgroup_offline)(struct bpf_oom_ctx *ctx, __u64 cgroup_id);
	char name[BPF_OOM_NAME_MAX_LEN];
};

/* Opaque iterator state, sizes as in kernel/bpf/cgroup_iter.c and task_iter.c. */
struct bpf_iter_css {
	__u64 __opaque[3];
} __attribute__((aligned(8)));

struct bpf_iter_css_task {
	__u64 __opaque[1];
} __attribute__((aligned(8)));

/* __ksym and friends need the types above. */
#include <bpf/bpf_helpers.h>

/* OOM kfuncs (spec section 4) */
extern int bpf_oom_kill_process(struct oom_control *oc, struct task_struct *task,
				const char *message__str) __ksym;
extern bool bpf_task_is_oom_victim(struct task_struct *task) __ksym;

/* memcg kfuncs, mm/bpf_memcontrol.c */
extern struct mem_cgroup *bpf_get_mem_cgroup(struct cgroup_subsys_state *css) __ksym;
extern void bpf_put_mem_cgroup(struct mem_cgroup *memcg) __ksym;
extern unsigned long bpf_mem_cgroup_usage(struct mem_cgroup *memcg) __ksym;
extern unsigned long bpf_mem_cgroup_page_state(struct mem_cgroup *memcg, int idx) __ksym;
extern void bpf_mem_cgroup_flush_stats(struct mem_cgroup *memcg) __ksym;

/* generic kfuncs, kernel/bpf/helpers.c, cgroup_iter.c, task_iter.c */
extern struct cgroup *bpf_cgroup_from_id(__u64 cgid) __ksym;
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

/* The cgroup id of a memcg (its cgroup directory's inode number). */
#define memcg_cgroup_id(memcg) ((memcg)->css.cgroup->kn->id)

/* -- PSI triggers owned by BPF and declared OOMs (spec sections 4 and 5) -- */

/* include/linux/psi_types.h: the resources, stable since PSI began */
enum psi_res {
	PSI_IO = 0,
	PSI_MEM = 1,
	PSI_CPU = 2,
};
#define BPF_PSI_FULL 0x80000000

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

enum bpf_oom_flags {
	BPF_OOM_FLAGS_WAIT_ON_OOM_LOCK = 1 << 0,
	BPF_OOM_FLAGS_LAST = 1 << 1,
};

extern int bpf_psi_create_trigger(struct bpf_psi *bpf_psi, __u64 cgroup_id, __u32 resource,
				  __u32 threshold_us, __u32 window_us) __ksym;
extern int bpf_out_of_memory(struct mem_cgroup *memcg__nullable, int order, __u64 flags,
			     const char *constraint_text__nullable) __ksym;

#endif
