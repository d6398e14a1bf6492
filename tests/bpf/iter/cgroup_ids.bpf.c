// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A cgroup iterator that reports the id of every cgroup it visits twice:
 * as its seq output (8 bytes each) and in the mmapable array `ids` (index
 * = visit number), so a test can check both ways out of a walk.
 */
#include "../test_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
	__u64 seq_num;
} __attribute__((preserve_access_index));

struct kernfs_node {
	__u64 id;
} __attribute__((preserve_access_index));

struct cgroup {
	struct kernfs_node *kn;
} __attribute__((preserve_access_index));

struct bpf_iter__cgroup {
	struct bpf_iter_meta *meta;
	struct cgroup *cgroup;
} __attribute__((preserve_access_index));

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, 1U << 10); /* BPF_F_MMAPABLE */
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} ids SEC(".maps");

/* Bytes of padding written after each id: a test makes the walk outgrow the kernel's buffer. */
__u32 padding;
static char zeros[4096];

SEC("iter/cgroup")
int cgroup_ids(struct bpf_iter__cgroup *ctx)
{
	struct cgroup *cgrp = ctx->cgroup;
	__u32 index = ctx->meta->seq_num;
	__u64 id, *slot;
	__u32 pad = padding;

	if (!cgrp)
		return 0;
	id = BPF_CORE_READ(cgrp, kn, id);
	bpf_seq_write(ctx->meta->seq, &id, sizeof(id));
	if (pad > 0 && pad <= sizeof(zeros))
		bpf_seq_write(ctx->meta->seq, zeros, pad);
	slot = bpf_map_lookup_elem(&ids, &index);
	if (slot)
		*slot = id;
	return 0;
}
