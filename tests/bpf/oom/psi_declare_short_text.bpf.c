// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A bpf_psi_ops whose init() hands bpf_out_of_memory() a one-byte writable
 * buffer as its constraint text (issue 22, defect 7). The kernel used to
 * verify one byte and copy up to 63: the verifier must refuse it at load,
 * since the text must be a constant string it can check to its NUL.
 */
#include "bpfoom_kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Alone in its section: the map value is this one byte, no NUL after it. */
char short_text[1] SEC(".data.short_text") = { 'x' };

SEC("struct_ops.s/init")
int BPF_PROG(short_text_init, struct bpf_psi *bpf_psi)
{
	bpf_out_of_memory(NULL, 0, 0, short_text);
	return 0;
}

SEC("struct_ops.s/handle_psi_event")
void BPF_PROG(short_text_event, struct bpf_psi *bpf_psi, struct psi_trigger *t)
{
}

SEC(".struct_ops.link")
struct bpf_psi_ops psi_declare_short_text = {
	.init = (void *)short_text_init,
	.handle_psi_event = (void *)short_text_event,
};
