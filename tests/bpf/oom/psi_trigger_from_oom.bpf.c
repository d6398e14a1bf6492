// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A bpf_oom_ops handler that calls bpf_psi_create_trigger.  Triggers belong
 * to a bpf_psi, which only bpf_psi_ops programs are given, so the kfunc
 * filter must reject this object at load.
 */
#include "oom_kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("struct_ops.s/handle_out_of_memory")
int BPF_PROG(rogue_trigger, struct bpf_oom_ctx *oom_ctx, struct oom_control *oc)
{
	bpf_psi_create_trigger(NULL, 0, PSI_MEM, 100000, 1000000);
	return 0;
}

SEC(".struct_ops.link")
struct bpf_oom_ops rogue_trigger_policy = {
	.handle_out_of_memory = (void *)rogue_trigger,
	.name = "bpfoom_rogue_trigger",
};
