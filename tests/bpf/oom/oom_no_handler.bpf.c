// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A bpf_oom_ops without handle_out_of_memory: such a policy could never act
 * on an OOM, so the kernel must refuse it (-EINVAL) when libbpf sets the
 * struct_ops value at load.
 */
#include "oom_kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("struct_ops.s/handle_cgroup_offline")
void BPF_PROG(only_offline, struct bpf_oom_ctx *oom_ctx, __u64 cgroup_id)
{
}

SEC(".struct_ops.link")
struct bpf_oom_ops handlerless = {
	.handle_cgroup_offline = (void *)only_offline,
	.name = "handlerless",
};
