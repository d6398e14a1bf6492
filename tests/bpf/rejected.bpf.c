// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A program the verifier must reject: it reads 8 bytes at offset 64 of a
 * map value that is only 8 bytes long.  Tests check that the load error
 * carries the verifier's log.
 */
#include "test_types.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} values SEC(".maps");

SEC("socket")
int read_past_value(struct __sk_buff *skb)
{
	__u32 key = 0;
	__u64 *value = bpf_map_lookup_elem(&values, &key);

	if (!value)
		return 0;
	return (int)value[8];
}
