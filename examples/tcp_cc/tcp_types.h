/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The few kernel types the tcp_cc example touches, written by hand instead of
 * a vmlinux.h dumped from one kernel: CO-RE (preserve_access_index) lets
 * libbpf relocate every field access against the running kernel's BTF, so
 * the committed object does not depend on the kernel it was built on.
 */
#ifndef BPFOOM_EXAMPLE_TCP_TYPES_H
#define BPFOOM_EXAMPLE_TCP_TYPES_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed char __s8;
typedef short __s16;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;

struct sock;

/* Only the fields the example reads or writes; libbpf finds them by name. */
struct tcp_sock {
	__u32 snd_cwnd;
	__u32 snd_cwnd_cnt;
	__u32 snd_ssthresh;
	__u32 prior_cwnd;
} __attribute__((preserve_access_index));

/*
 * The struct_ops value type.  libbpf matches it to the kernel's
 * tcp_congestion_ops by name and copies members by name, so declaring only
 * the callbacks we implement and the data members we set is enough.
 */
struct tcp_congestion_ops {
	__u32 (*ssthresh)(struct sock *sk);
	void (*cong_avoid)(struct sock *sk, __u32 ack, __u32 acked);
	__u32 (*undo_cwnd)(struct sock *sk);
	void (*init)(struct sock *sk);
	char name[16];
	__u32 flags;
};

#endif
