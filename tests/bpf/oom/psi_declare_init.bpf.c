// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A bpf_psi_ops whose init() declares one OOM with bpf_out_of_memory(), in
 * the registering task's context, so a test gets a declared OOM at a known
 * moment: in the memcg of `cgroup_id`, in the root memcg (`use_root`), or
 * system-wide (cgroup_id 0), with `flags` (default: wait for oom_lock).
 * `ret` is what the kfunc answered; start_ns and end_ns when it was called
 * and when it returned (bpf_ktime_get_ns), so a test can tell it waited.
 */
#include "bpfoom_kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

__u64 cgroup_id;
bool use_root;
__u64 flags = BPF_OOM_FLAGS_WAIT_ON_OOM_LOCK;
__s32 ret;
__u32 declared;
__u64 start_ns;
__u64 end_ns;

SEC("struct_ops.s/init")
int BPF_PROG(declare_init, struct bpf_psi *bpf_psi)
{
	struct mem_cgroup *memcg = NULL;
	struct cgroup *cgrp;

	if (use_root) {
		memcg = bpf_get_root_mem_cgroup();
		if (!memcg)
			return 0;
	} else if (cgroup_id) {
		cgrp = bpf_cgroup_from_id(cgroup_id);
		if (!cgrp)
			return 0;
		memcg = bpf_get_mem_cgroup(&cgrp->self);
		bpf_cgroup_release(cgrp);
		if (!memcg)
			return 0;
	}
	start_ns = bpf_ktime_get_ns();
	ret = bpf_out_of_memory(memcg, 0, flags, "bpfoom_declared");
	end_ns = bpf_ktime_get_ns();
	declared++;
	if (memcg)
		bpf_put_mem_cgroup(memcg);
	return 0;
}

SEC("struct_ops.s/handle_psi_event")
void BPF_PROG(declare_event, struct bpf_psi *bpf_psi, struct psi_trigger *t)
{
}

SEC(".struct_ops.link")
struct bpf_psi_ops psi_declare_init = {
	.init = (void *)declare_init,
	.handle_psi_event = (void *)declare_event,
};
