// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A tcp_congestion_ops program that calls bpf_oom_kill_process.  The kfunc is
 * for bpf_oom_ops programs only (only they run with oom_lock held and a live
 * oom_control), so the verifier must reject this object at load.
 */
#include "bpfoom_kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "tcp_cc_stubs.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("struct_ops")
void BPF_PROG(rogue_init, struct sock *sk)
{
	struct task_struct *task = bpf_task_from_pid(1);

	if (task) {
		bpf_oom_kill_process(NULL, task, "not an OOM handler");
		bpf_task_release(task);
	}
}

SEC(".struct_ops.link")
struct tcp_congestion_ops rogue_cc = {
	.init = (void *)rogue_init,
	.ssthresh = (void *)stub_ssthresh,
	.cong_avoid = (void *)stub_cong_avoid,
	.undo_cwnd = (void *)stub_undo_cwnd,
	.name = "bpfoom_rogue",
};
