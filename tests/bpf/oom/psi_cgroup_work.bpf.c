// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Counts how often one process queues bpf_psi's cgroup event work: the
 * work item whose function is at `work_func` (the address of
 * bpf_psi_cgroup_workfn, from /proc/kallsyms), queued by `target_tgid`.
 * The cgroup notifier runs in the task doing the mkdir or rmdir, so a test
 * sees what its own cgroup churn cost, and nothing queued before it began.
 */
#include "bpfoom_kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct workqueue_struct;
struct work_struct {
	void *func;
} __attribute__((preserve_access_index));

const volatile __u64 work_func;
const volatile __u32 target_tgid;

__u64 queued;

SEC("fentry/queue_work_on")
int BPF_PROG(count_queue, int cpu, struct workqueue_struct *wq, struct work_struct *work)
{
	if (bpf_get_current_pid_tgid() >> 32 != target_tgid)
		return 0;
	if ((__u64)work->func == work_func)
		__sync_fetch_and_add(&queued, 1);
	return 0;
}
