// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Typed ring buffer records: a socket filter emits one struct sample per
 * packet its socket receives, so a test reads them back as Records decoded
 * through this object's BTF (an array, a nested struct, an enum field).
 */
#include "test_types.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

enum sample_kind {
	SAMPLE_PACKET = 1,
	SAMPLE_OTHER = 2,
};

struct sample_origin {
	__u32 len;
	__u32 protocol;
};

struct sample {
	__u32 magic;
	enum sample_kind kind;
	__u64 sequence;
	struct sample_origin origin;
	char tag[8];
};

/*
 * Never written: a ring buffer map cannot name its record type, so this
 * global puts struct sample into the object's BTF for readers.
 */
struct sample sample_layout;

__u64 samples_sent;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} samples SEC(".maps");

struct __sk_buff {
	__u32 len;
	__u32 pkt_type;
	__u32 mark;
	__u32 queue_mapping;
	__u32 protocol;
};

SEC("socket")
int emit_sample(struct __sk_buff *skb)
{
	struct sample *s = bpf_ringbuf_reserve(&samples, sizeof(*s), 0);

	if (!s)
		return KEEP_WHOLE_PACKET;
	s->magic = 0x5a4d;
	s->kind = SAMPLE_PACKET;
	s->sequence = __sync_fetch_and_add(&samples_sent, 1);
	s->origin.len = skb->len;
	s->origin.protocol = skb->protocol;
	__builtin_memcpy(s->tag, "bpfoom", 7);
	s->tag[7] = 0;
	bpf_ringbuf_submit(s, 0);
	return KEEP_WHOLE_PACKET;
}
