// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A feeder for bench/event_throughput.py: each run (BPF_PROG_TEST_RUN of the
 * SEC("syscall") program `feed`) writes `count` decision records to the
 * `events` ring buffer of policy_event.h, as fast as the kernel can.  The
 * records have the layout every shipped policy writes, and the contents of a
 * typical kill: three pids, four ranked candidates and a few exclusions, so
 * decoding them costs what decoding a real decision costs.
 *
 * Built at run time into build/bench/ (clang-19); not shipped.
 */
#include "bpfoom_kernel.h"
#include <bpf/bpf_helpers.h>

#define POLICY_NAME "event_feed"
#include "policy_event.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* What user space passes in ctx_in. */
struct feed_args {
	__u32 count;		/* records to write in this run */
};

/* Records written and records the ring had no room for, over all runs. */
__u64 fed;
__u64 full;

static __always_inline void fill(struct policy_event *e, __u64 serial)
{
	int i;

	__builtin_memset(e, 0, sizeof(*e));
	e->schema = POLICY_EVENT_SCHEMA;
	e->size = sizeof(*e);
	__builtin_memcpy(e->policy, POLICY_NAME, sizeof(POLICY_NAME));
	e->action = ACTION_KILLED;
	e->reason = REASON_LARGEST_LEAF;
	e->time_ns = bpf_ktime_get_ns();
	e->scope_cgroup_id = 1000;
	e->oom_cgroup_id = 1000;
	e->victim_cgroup_id = 2000 + serial % 64;
	e->usage_bytes = (64ULL << 20) + serial;
	e->candidates = 40;
	e->nr_pids = 3;
	e->granularity = GRANULARITY_CGROUP;
	e->granularity_cgroup_id = 0;
	e->pids[0] = 100 + (__s32)(serial & 0xffff);
	e->pids[1] = 101;
	e->pids[2] = 102;
	e->nr_candidates = 4;
	for (i = 0; i < 4; i++) {
		e->candidate[i].cgroup_id = 2000 + i;
		e->candidate[i].usage_bytes = (64ULL - i) << 20;
		e->candidate[i].rank = (60ULL - i) << 20;
	}
	e->excluded[EXCLUDED_UNKILLABLE].count = 1;
	e->excluded[EXCLUDED_UNKILLABLE].cgroup_ids[0] = 3000;
	e->excluded[EXCLUDED_OOM_VICTIM].count = 2;
	e->excluded[EXCLUDED_OOM_VICTIM].cgroup_ids[0] = 3001;
	e->excluded[EXCLUDED_OOM_VICTIM].cgroup_ids[1] = 3002;
}

SEC("syscall")
int feed(struct feed_args *args)
{
	__u32 count = args->count;
	int i;

	bpf_for(i, 0, count) {
		struct policy_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

		if (!e) {
			full++;
			break;
		}
		fill(e, fed);
		bpf_ringbuf_submit(e, 0);
		fed++;
	}
	return 0;
}
