// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A tcp_congestion_ops that reports one decision record (policy_event.h) for
 * every connection it starts: decisions written on any kernel, bpf_oom_ops or
 * not, so host tests can read them through the pins `bpfoom attach` makes
 * and overrun its ring buffer by opening more connections than fit.
 */
#include "bpfoom_kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define POLICY_NAME "tcp_decisions"
#include "policy_event.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct sock;

struct tcp_congestion_ops {
	void (*init)(struct sock *sk);
	__u32 (*ssthresh)(struct sock *sk);
	void (*cong_avoid)(struct sock *sk, __u32 ack, __u32 acked);
	__u32 (*undo_cwnd)(struct sock *sk);
	char name[16];
};

SEC("struct_ops")
void BPF_PROG(decide_init, struct sock *sk)
{
	event_send_unlocked(ACTION_DECLINED, REASON_NONE, 0, 0, 0, 0);
}

SEC("struct_ops")
__u32 BPF_PROG(decide_ssthresh, struct sock *sk)
{
	return 2;
}

SEC("struct_ops")
void BPF_PROG(decide_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
}

SEC("struct_ops")
__u32 BPF_PROG(decide_undo_cwnd, struct sock *sk)
{
	return 2;
}

SEC(".struct_ops.link")
struct tcp_congestion_ops tcp_decisions = {
	.init = (void *)decide_init,
	.ssthresh = (void *)decide_ssthresh,
	.cong_avoid = (void *)decide_cong_avoid,
	.undo_cwnd = (void *)decide_undo_cwnd,
	.name = "tcp_decisions",
};
