// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Minimal BTF in the shapes a kernel's vmlinux BTF can have, for ABI
 * detection on any host: compiled with clang -g -target bpf -DSHAPE_<X>,
 * only the types bpfoom reads (bpf_oom_ops, union bpf_attr's query,
 * struct bpf_struct_ops_link) as the kernel lays them out.
 *
 * SHAPE_V2:           the BPF OOM series' v2 (our default kernel)
 * SHAPE_NEXT:         bpf_oom_ops on the generic cgroup struct_ops link
 * SHAPE_INTERMEDIATE: an upstream draft that passed the link to the handler
 * SHAPE_NEXT_NO_QUERY: the next handler on a kernel without BPF_PROG_QUERY of
 *                     struct_ops (inconsistent: must not be taken for next)
 */
typedef unsigned int __u32;
typedef unsigned long long __u64;

struct oom_control;
struct cgroup;
struct bpf_oom_ctx { __u64 cgroup_id; };

struct bpf_struct_ops_link {
	void *map;
#ifdef SHAPE_V2
	__u64 cgroup_id;
#endif
};

union bpf_attr {
	struct {
		__u32 target_fd;
		__u32 attach_type;
		__u32 query_flags;
		__u32 attach_flags;
		__u64 prog_ids;
		__u32 count;
		__u64 revision;
#if defined(SHAPE_NEXT) || defined(SHAPE_INTERMEDIATE)
		__u32 type_id;
#endif
	} query;
	__u32 map_fd;
};

struct bpf_oom_ops {
#ifdef SHAPE_V2
	int (*handle_out_of_memory)(struct bpf_oom_ctx *ctx, struct oom_control *oc);
	void (*handle_cgroup_offline)(struct bpf_oom_ctx *ctx, __u64 cgroup_id);
#elif defined(SHAPE_INTERMEDIATE)
	int (*handle_out_of_memory)(struct oom_control *oc, struct bpf_struct_ops_link *link);
#else
	int (*handle_out_of_memory)(struct oom_control *oc, struct cgroup *attached_cgrp);
#endif
	char name[64];
};

/* Globals make clang emit the types' BTF. */
struct bpf_oom_ops ops;
union bpf_attr attr;
struct bpf_struct_ops_link link;
