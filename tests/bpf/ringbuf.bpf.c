// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A ring buffer fed by a socket filter: every packet the socket receives
 * emits one event, so a test triggers events by sending UDP datagrams.
 */
#include "test_types.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct event {
	__u32 magic;
	__u32 reserved;
	__u64 sequence;
};

/* Copied into every event so a test can tell its events from garbage. */
const volatile __u32 event_magic = 0xb0f00d;

__u64 events_sent;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

SEC("socket")
int emit_event(struct __sk_buff *skb)
{
	struct event e = {
		.magic = event_magic,
		.sequence = __sync_fetch_and_add(&events_sent, 1),
	};

	bpf_ringbuf_output(&events, &e, sizeof(e), 0);
	return KEEP_WHOLE_PACKET;
}
