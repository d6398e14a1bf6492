// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * memcg_stats: one cgroup-iterator pass over a subtree, one record per memcg.
 *
 * The walk runs under cgroup_mutex, so every record comes from the same
 * moment of the tree.  Records go into the mmapable array `records`, read by
 * user space in one copy; the iterator's own output is only the trailer (how
 * many memcgs the pass saw).  Records cannot go through bpf_seq_write: a
 * cgroup iterator has a single read session whose kernel buffer is 8 pages,
 * so a walk that writes more than 32 KiB ends in EOPNOTSUPP
 * (kernel/bpf/cgroup_iter.c) -- about 80 records of this size.
 */

#include "bpfoom_kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

/* One memcg, as memcg_stats.py's _RECORD reads it: keep the two in step. */
#define MEMCG_RECORD_HAS_PRESSURE (1U << 0)
#define MEMCG_NAME_LEN 256

struct memcg_record {
	__u64 id;		/* cgroup id */
	__u64 parent_id;	/* 0 for the hierarchy's root */
	__u64 usage;		/* bytes (memory.current) */
	__u64 max_pages;	/* memory.max in pages */
	__u64 anon;		/* bytes (memory.stat anon) */
	__u64 file;		/* bytes (memory.stat file) */
	__u64 oom;		/* memory.events oom */
	__u64 oom_kill;		/* memory.events oom_kill */
	__u64 some_total_ns;	/* memory.pressure, if flags has HAS_PRESSURE */
	__u64 full_total_ns;
	__u64 some_avg[3];	/* avg10, avg60, avg300; fixed point, 11 fraction bits */
	__u64 full_avg[3];
	__u32 level;
	__u32 flags;
	char name[MEMCG_NAME_LEN];
};

/* The iterator's whole output. */
#define MEMCG_TRAILER_MAGIC 0x6d656d63 /* "memc" */
struct memcg_trailer {
	__u32 magic;
	__u32 seen;
};

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* max_entries is set by user space before load: the capacity of one pass. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct memcg_record);
} records SEC(".maps");

/* memcgs seen by the pass running now; a pass starts at seq_num 0. */
__u32 seen;

/* psi->total[PSI_AVGS][state] (ns) and psi->avg[state][0..2] (fixed point, 11 bits). */
static void read_pressure(struct psi_group *psi, int state, __u64 *total, __u64 avg[3])
{
	unsigned long total_at = bpf_core_field_offset(struct psi_group, total);
	unsigned long avg_at = bpf_core_field_offset(struct psi_group, avg);
	int i;

	bpf_probe_read_kernel(total, sizeof(*total), (void *)psi + total_at + state * 8);
	for (i = 0; i < 3; i++)
		bpf_probe_read_kernel(&avg[i], sizeof(avg[i]),
				      (void *)psi + avg_at + (state * 3 + i) * 8);
}

static void fill(struct memcg_record *rec, struct cgroup *cgrp, struct mem_cgroup *memcg)
{
	struct psi_group *psi = NULL;
	const char *name;

	rec->id = BPF_CORE_READ(cgrp, kn, id);
	rec->parent_id = BPF_CORE_READ(cgrp, self.parent, cgroup, kn, id);
	rec->level = BPF_CORE_READ(cgrp, level);
	rec->usage = bpf_mem_cgroup_usage(memcg);
	rec->max_pages = BPF_CORE_READ(memcg, memory.max);
	rec->anon = bpf_mem_cgroup_page_state(memcg,
		bpf_core_enum_value(enum node_stat_item, NR_ANON_MAPPED));
	rec->file = bpf_mem_cgroup_page_state(memcg,
		bpf_core_enum_value(enum node_stat_item, NR_FILE_PAGES));
	rec->oom = bpf_mem_cgroup_memory_events(memcg,
		bpf_core_enum_value(enum memcg_memory_event, MEMCG_OOM));
	rec->oom_kill = bpf_mem_cgroup_memory_events(memcg,
		bpf_core_enum_value(enum memcg_memory_event, MEMCG_OOM_KILL));

	rec->flags = 0;
	if (bpf_core_field_exists(cgrp->psi))
		psi = BPF_CORE_READ(cgrp, psi);
	if (psi && BPF_CORE_READ(psi, enabled)) {
		rec->flags |= MEMCG_RECORD_HAS_PRESSURE;
		read_pressure(psi, bpf_core_enum_value(enum psi_states, PSI_MEM_SOME),
			      &rec->some_total_ns, rec->some_avg);
		read_pressure(psi, bpf_core_enum_value(enum psi_states, PSI_MEM_FULL),
			      &rec->full_total_ns, rec->full_avg);
	}
	name = BPF_CORE_READ(cgrp, kn, name);
	if (bpf_probe_read_kernel_str(rec->name, sizeof(rec->name), name) < 0)
		rec->name[0] = '\0';
}

SEC("iter.s/cgroup")
int memcg_stats(struct bpf_iter__cgroup *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct cgroup *cgrp = ctx->cgroup;
	struct memcg_record *rec;
	struct mem_cgroup *memcg;
	__u32 index;

	if (!cgrp) {
		/* the walk is over: tell user space how many memcgs it saw */
		struct memcg_trailer trailer = { .seen = seen, .magic = MEMCG_TRAILER_MAGIC };

		bpf_seq_write(seq, &trailer, sizeof(trailer));
		seen = 0;
		return 0;
	}
	if (ctx->meta->seq_num == 0)
		seen = 0;
	memcg = bpf_get_mem_cgroup(&cgrp->self);
	if (!memcg)
		return 0; /* no memory controller in this cgroup */
	if (seen == 0)
		/* the walk's first memcg is its top one: one flush covers the subtree */
		bpf_mem_cgroup_flush_stats(memcg);
	index = seen++;
	rec = bpf_map_lookup_elem(&records, &index);
	if (rec)
		fill(rec, cgrp, memcg);
	bpf_put_mem_cgroup(memcg);
	return 0;
}
