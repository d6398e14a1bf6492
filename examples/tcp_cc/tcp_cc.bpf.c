// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A Reno-like TCP congestion control registered through struct_ops.
 *
 * It exists to exercise bpfoom's generic machinery on any kernel with
 * tcp_congestion_ops struct_ops: two struct_ops maps share the programs (so a
 * link can be moved from one to the other), a .rodata tunable is set from
 * Python before load, and .bss/.data counters are written by the kernel side
 * so Python can read them back.
 */
#include "tcp_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Floor for the slow-start threshold after a loss; set before load(). */
const volatile __u32 min_ssthresh = 2;

/* Sockets that started using this congestion control (written by the kernel side). */
__u64 connections_initialized;

/* Loss events seen, so a user can tell the algorithm is doing its job. */
__u64 ssthresh_calls = 0;

/* A non-zero .data default, proving initial values survive the round trip. */
__u32 cwnd_increments_per_rtt = 1;

static struct tcp_sock *tcp_of(struct sock *sk)
{
	/* The kernel promotes struct_ops tcp ca arguments to tcp_sock. */
	return (struct tcp_sock *)sk;
}

SEC("struct_ops")
void BPF_PROG(demo_init, struct sock *sk)
{
	__sync_fetch_and_add(&connections_initialized, 1);
}

SEC("struct_ops")
__u32 BPF_PROG(demo_ssthresh, struct sock *sk)
{
	struct tcp_sock *tp = tcp_of(sk);
	__u32 half = tp->snd_cwnd >> 1;

	__sync_fetch_and_add(&ssthresh_calls, 1);
	return half > min_ssthresh ? half : min_ssthresh;
}

SEC("struct_ops")
void BPF_PROG(demo_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
	struct tcp_sock *tp = tcp_of(sk);

	if (tp->snd_cwnd < tp->snd_ssthresh) {
		/* Slow start: one segment per segment acknowledged. */
		tp->snd_cwnd = tp->snd_cwnd + acked;
		return;
	}
	/* Congestion avoidance: cwnd_increments_per_rtt segments per window. */
	tp->snd_cwnd_cnt = tp->snd_cwnd_cnt + acked;
	if (tp->snd_cwnd_cnt >= tp->snd_cwnd) {
		tp->snd_cwnd_cnt = tp->snd_cwnd_cnt - tp->snd_cwnd;
		tp->snd_cwnd = tp->snd_cwnd + cwnd_increments_per_rtt;
	}
}

SEC("struct_ops")
__u32 BPF_PROG(demo_undo_cwnd, struct sock *sk)
{
	struct tcp_sock *tp = tcp_of(sk);

	return tp->snd_cwnd > tp->prior_cwnd ? tp->snd_cwnd : tp->prior_cwnd;
}

/* Two maps over the same programs: registered side by side, or swapped by a link update. */
SEC(".struct_ops.link")
struct tcp_congestion_ops bpfoom_demo = {
	.init = (void *)demo_init,
	.ssthresh = (void *)demo_ssthresh,
	.cong_avoid = (void *)demo_cong_avoid,
	.undo_cwnd = (void *)demo_undo_cwnd,
	.name = "bpfoom_demo",
};

SEC(".struct_ops.link")
struct tcp_congestion_ops bpfoom_demo2 = {
	.init = (void *)demo_init,
	.ssthresh = (void *)demo_ssthresh,
	.cong_avoid = (void *)demo_cong_avoid,
	.undo_cwnd = (void *)demo_undo_cwnd,
	.name = "bpfoom_demo2",
};
