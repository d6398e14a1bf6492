// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A bpf_oom_ops policy whose behaviour the test picks per attachment, and
 * which records every call, so a test can tell which handlers the kernel
 * ran, in which order, and what the kfuncs answered.
 *
 * The same map may be attached several times (to memcgs and system-wide);
 * `actions`, keyed by the attachment's cgroup id (0 = system-wide), says what
 * the handler does there: decline, kill a given pid, kill the allocating task,
 * or claim success without freeing anything (a buggy policy the kernel must
 * not trust).
 */
#include "bpfoom_kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

enum action_kind {
	ACTION_DECLINE = 0,		/* record the call, return 0 */
	ACTION_KILL_PID = 1,		/* bpf_oom_kill_process(pid), return 1 if it worked */
	ACTION_CLAIM_WITHOUT_KILL = 2,	/* return 1 with nothing freed */
	ACTION_KILL_CURRENT = 3,	/* kill the task whose allocation hit the OOM */
};

struct action {
	__u32 kind;
	__s32 pid;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u64);
	__type(value, struct action);
} actions SEC(".maps");

#define MAX_CALLS 64
#define MAX_OFFLINES 16

/* Per handle_out_of_memory call, in order: ctx->cgroup_id and the OOMing memcg's id (0: global). */
__u64 call_ctx_ids[MAX_CALLS];
__u64 call_oom_ids[MAX_CALLS];
__u32 calls;
/* What the last bpf_oom_kill_process returned, and how many kills worked. */
__s32 last_kill_ret = 1;
__u32 kills;
/* bpf_task_is_oom_victim for the last victim, right before and after the kill. */
bool victim_before_kill;
bool victim_after_kill;
/*
 * OOMs that found the chosen task already dying.  The kernel asks the policy
 * again while its victim exits; killing it again would count and report a
 * second kill, so the policy declines and the kernel waits for the victim.
 */
__u32 victim_waits;
/* handle_cgroup_offline calls: the id argument and ctx->cgroup_id. */
__u64 offline_ids[MAX_OFFLINES];
__u64 offline_ctx_ids[MAX_OFFLINES];
__u32 offlines;

/*
 * Busy iterations per handler call, so a test can keep handlers running (and
 * oom_lock held) while it detaches or declares; each call's spin start and
 * end (bpf_ktime_get_ns).
 */
__u32 handler_spin_loops = 0;
__u64 spin_start_ns[MAX_CALLS];
__u64 spin_end_ns[MAX_CALLS];

static long spin_once(__u64 index, void *ctx)
{
	return 0;
}

static int kill_task(struct oom_control *oc, struct task_struct *task)
{
	int ret;

	if (bpf_task_is_oom_victim(task)) {
		victim_waits++;
		return 0;
	}
	victim_before_kill = bpf_task_is_oom_victim(task);
	ret = bpf_oom_kill_process(oc, task, "bpfoom test policy");
	victim_after_kill = bpf_task_is_oom_victim(task);
	last_kill_ret = ret;
	if (ret)
		return 0;
	kills++;
	return 1;
}

static int kill_pid(struct oom_control *oc, __s32 pid)
{
	struct task_struct *task;
	int ret;

	task = bpf_task_from_pid(pid);
	if (!task) {
		last_kill_ret = -3; /* -ESRCH: the test's victim is already gone */
		return 0;
	}
	ret = kill_task(oc, task);
	bpf_task_release(task);
	return ret;
}

SEC("struct_ops.s/handle_out_of_memory")
int BPF_PROG(probe_handle_oom, struct bpf_oom_ctx *oom_ctx, struct oom_control *oc)
{
	__u64 target = oom_ctx->cgroup_id;
	struct mem_cgroup *memcg = oc->memcg;
	struct action *action;
	__u32 slot = calls;

	if (slot < MAX_CALLS) {
		call_ctx_ids[slot] = target;
		call_oom_ids[slot] = memcg ? memcg_cgroup_id(memcg) : 0;
	}
	calls = slot + 1;
	if (handler_spin_loops) {
		__u64 start = bpf_ktime_get_ns();

		bpf_loop(handler_spin_loops, spin_once, NULL, 0);
		if (slot < MAX_CALLS) {
			spin_start_ns[slot] = start;
			spin_end_ns[slot] = bpf_ktime_get_ns();
		}
	}

	action = bpf_map_lookup_elem(&actions, &target);
	if (!action)
		return 0;
	switch (action->kind) {
	case ACTION_KILL_PID:
		return kill_pid(oc, action->pid);
	case ACTION_KILL_CURRENT:
		return kill_task(oc, bpf_get_current_task_btf());
	case ACTION_CLAIM_WITHOUT_KILL:
		return 1;
	default:
		return 0;
	}
}

SEC("struct_ops.s/handle_cgroup_offline")
void BPF_PROG(probe_cgroup_offline, struct bpf_oom_ctx *oom_ctx, __u64 cgroup_id)
{
	__u32 slot = offlines;

	if (slot < MAX_OFFLINES) {
		offline_ids[slot] = cgroup_id;
		offline_ctx_ids[slot] = oom_ctx->cgroup_id;
	}
	offlines = slot + 1;
}

/* Its name is set by the tests (spec: the OOM report shows it). */
SEC(".struct_ops.link")
struct bpf_oom_ops probe_policy = {
	.handle_out_of_memory = (void *)probe_handle_oom,
	.handle_cgroup_offline = (void *)probe_cgroup_offline,
	.name = "bpfoom_probe",
};

/* A second map over the same programs, for "a second policy on a busy target". */
SEC(".struct_ops.link")
struct bpf_oom_ops probe_policy2 = {
	.handle_out_of_memory = (void *)probe_handle_oom,
	.name = "bpfoom_probe2",
};
