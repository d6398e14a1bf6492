// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A tcp_congestion_ops program that calls bpf_oom_kill_process.  The kfunc is
 * for bpf_oom_ops programs only (only they run with oom_lock held and a live
 * oom_control), so the verifier must reject this object at load.
 */
#include "oom_kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct sock;

struct tcp_congestion_ops {
	__u32 (*ssthresh)(struct sock *sk);
	void (*cong_avoid)(struct sock *sk, __u32 ack, __u32 acked);
	__u32 (*undo_cwnd)(struct sock *sk);
	char name[16];
};

SEC("struct_ops")
__u32 BPF_PROG(rogue_ssthresh, struct sock *sk)
{
	struct task_struct *task = bpf_task_from_pid(1);

	if (task) {
		bpf_oom_kill_process(NULL, task, "not an OOM handler");
		bpf_task_release(task);
	}
	return 2;
}

SEC("struct_ops")
void BPF_PROG(rogue_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
}

SEC("struct_ops")
__u32 BPF_PROG(rogue_undo_cwnd, struct sock *sk)
{
	return 2;
}

SEC(".struct_ops.link")
struct tcp_congestion_ops rogue_cc = {
	.ssthresh = (void *)rogue_ssthresh,
	.cong_avoid = (void *)rogue_cong_avoid,
	.undo_cwnd = (void *)rogue_undo_cwnd,
	.name = "bpfoom_rogue",
};
