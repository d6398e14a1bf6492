// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Maps of the kinds the Map API's flags and pops are for, with no program:
 * a hash (update flags, batch delete), a hash whose value holds a spin lock
 * (BPF_F_LOCK), a queue and a stack (lookup-and-delete pops), and a hash
 * pinned by name, so a second object opened with the same pin_root_path
 * reuses it.
 */
#include "../test_types.h"
#include <bpf/bpf_helpers.h>

/* UAPI values (include/uapi/linux/bpf.h) test_types.h does not carry. */
enum {
	BPF_MAP_TYPE_QUEUE = 22,
	BPF_MAP_TYPE_STACK = 23,
};

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct bpf_spin_lock {
	__u32 val;
};

struct locked_value {
	struct bpf_spin_lock lock;
	__u32 pad;
	__u64 value;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} table SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct locked_value);
} locked SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 4);
	__type(value, __u64);
} fifo SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK);
	__uint(max_entries, 4);
	__type(value, __u64);
} lifo SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} shared SEC(".maps");
