/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The callbacks a tcp_congestion_ops must have, doing nothing, for test
 * programs that use a congestion control only as a struct_ops any kernel
 * registers.  Include after bpfoom_kernel.h and bpf_tracing.h, and use all
 * three: libbpf refuses an object with a struct_ops program no map uses.
 */
#ifndef BPFOOM_TCP_CC_STUBS_H
#define BPFOOM_TCP_CC_STUBS_H

SEC("struct_ops")
__u32 BPF_PROG(stub_ssthresh, struct sock *sk)
{
	return 2;
}

SEC("struct_ops")
void BPF_PROG(stub_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
}

SEC("struct_ops")
__u32 BPF_PROG(stub_undo_cwnd, struct sock *sk)
{
	return 2;
}

#endif
