// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A bpf_oom_ops handler that calls bpf_out_of_memory.  Declaring an OOM is
 * for PSI handlers only (an OOM handler already runs inside one), so the
 * kfunc filter must reject this object at load.
 */
#include "bpfoom_kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("struct_ops.s/handle_out_of_memory")
int BPF_PROG(rogue_declare, struct bpf_oom_ctx *oom_ctx, struct oom_control *oc)
{
	bpf_out_of_memory(NULL, 0, 0, "");
	return 0;
}

SEC(".struct_ops.link")
struct bpf_oom_ops rogue_declare_policy = {
	.handle_out_of_memory = (void *)rogue_declare,
	.name = "bpfoom_rogue_declare",
};
