// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Kconfig externs that no kernel defines, so their values can only come
 * from BpfObject.open(kconfig=...).  The socket filter copies them into
 * .bss, proving the values reached the loaded program.
 */
#include "test_types.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

extern bool CONFIG_BPFOOM_TEST_FLAG __kconfig __weak;
extern int CONFIG_BPFOOM_TEST_NUMBER __kconfig __weak;

bool seen_flag;
__s32 seen_number;

SEC("socket")
int copy_kconfig(struct __sk_buff *skb)
{
	seen_flag = CONFIG_BPFOOM_TEST_FLAG;
	seen_number = CONFIG_BPFOOM_TEST_NUMBER;
	return KEEP_WHOLE_PACKET;
}
