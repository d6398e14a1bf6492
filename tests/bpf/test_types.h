/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Types and constants the test objects need, written by hand rather than
 * dumped from one kernel, so the committed objects are the same whatever
 * kernel builds them.
 */
#ifndef BPFOOM_TEST_TYPES_H
#define BPFOOM_TEST_TYPES_H

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
typedef _Bool bool;
#define true 1
#define false 0

/* UAPI values (include/uapi/linux/bpf.h); stable ABI. */
enum {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_RINGBUF = 27,
};
enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
};

/* Socket filters only pass the context pointer along; its layout is unused. */
struct __sk_buff;

/* A socket filter's return value is the number of bytes to keep. */
#define KEEP_WHOLE_PACKET 0xffff

#endif
