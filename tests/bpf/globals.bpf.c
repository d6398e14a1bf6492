// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Global variables of every kind bpfoom decodes, in .rodata, .data and .bss,
 * plus a hash map and an array map.  No struct_ops: tests use it as the
 * object without one.  The socket filter copies what it sees into .bss and
 * the maps, so a test can prove the kernel saw the values Python wrote.
 */
#include "test_types.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

enum color { COLOR_RED = 0, COLOR_GREEN = 1, COLOR_BLUE = 7 };
/* An unsigned enum past INT_MAX (BTF kflag 0) and a signed one (kflag 1). */
enum big { BIG_SMALL = 1, BIG = 0x80000000u };
enum neg { NEG = -2, POS = 3 };

struct limits {
	__u32 low;
	__s64 high;
	bool enabled;
};

struct pair {
	__u32 a;
	__s32 b;
};

/* .rodata: writable from Python only before load(). */
const volatile __s8 ro_s8 = -8;
const volatile __u8 ro_u8 = 8;
const volatile __s16 ro_s16 = -16;
const volatile __u16 ro_u16 = 16;
const volatile __s32 ro_s32 = -32;
const volatile __u32 ro_u32 = 32;
const volatile __s64 ro_s64 = -64;
const volatile __u64 ro_u64 = 64;
const volatile bool ro_flag = true;
const volatile enum color ro_color = COLOR_BLUE;
const volatile char ro_label[16] = "rodata";
const volatile __u32 ro_weights[4] = { 1, 2, 3, 4 };
const volatile struct limits ro_limits = { .low = 1, .high = -2, .enabled = true };

/* .data: initialised, writable before and after load(). */
__s8 data_s8 = -9;
__u8 data_u8 = 9;
__s16 data_s16 = -17;
__u16 data_u16 = 17;
__s32 data_s32 = -33;
__u32 data_u32 = 33;
__s64 data_s64 = -65;
__u64 data_u64 = 65;
bool data_flag = true;
enum color data_color = COLOR_GREEN;
enum big data_big = BIG_SMALL;
enum neg data_neg = NEG;
char data_label[8] = "data";
__u32 data_weights[3] = { 5, 6, 7 };
struct limits data_limits = { .low = 2, .high = -3, .enabled = true };

/* .bss: zero at open. */
__s8 bss_s8;
__u8 bss_u8;
__s16 bss_s16;
__u16 bss_u16;
__s32 bss_s32;
__u32 bss_u32;
__s64 bss_s64;
__u64 bss_u64;
bool bss_flag;
enum color bss_color;
char bss_label[8];
__u32 bss_weights[2];
struct limits bss_limits;

/* Written by the program: what the kernel side saw. */
__u64 packets_seen;
__u32 seen_ro_u32;
__s32 seen_data_s32;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct pair);
} slots SEC(".maps");

SEC("socket")
int mirror_globals(struct __sk_buff *skb)
{
	__u32 key = ro_u32;
	__u32 first_slot = 0;
	__u64 one = 1;
	__u64 *count;
	struct pair seen = { .a = ro_u32, .b = data_s32 };

	count = bpf_map_lookup_elem(&counts, &key);
	if (count)
		__sync_fetch_and_add(count, 1);
	else
		bpf_map_update_elem(&counts, &key, &one, BPF_NOEXIST);
	bpf_map_update_elem(&slots, &first_slot, &seen, BPF_ANY);

	seen_ro_u32 = ro_u32;
	seen_data_s32 = data_s32;
	__sync_fetch_and_add(&packets_seen, 1);
	return KEEP_WHOLE_PACKET;
}
