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
#include "tcp_cc_stubs.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("struct_ops")
void BPF_PROG(decide_init, struct sock *sk)
{
	event_send_unlocked(ACTION_DECLINED, REASON_NONE, 0, 0, 0, 0);
}

SEC(".struct_ops.link")
struct tcp_congestion_ops tcp_decisions = {
	.init = (void *)decide_init,
	.ssthresh = (void *)stub_ssthresh,
	.cong_avoid = (void *)stub_cong_avoid,
	.undo_cwnd = (void *)stub_undo_cwnd,
	.name = "tcp_decisions",
};
