/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The scope of an OOM: the memcg that ran out of memory, or, for a
 * system-wide OOM, the whole machine (the root memcg, held for the call).
 *
 * A policy including this defines decide(); its handle_out_of_memory
 * program returns handle_oom(oom_ctx, oc).  next_leaf() walks the scope's
 * leaf cgroups, where tasks live (policy_leaves.h, policy_tasks.h).
 */
#ifndef BPFOOM_POLICY_SCOPE_H
#define BPFOOM_POLICY_SCOPE_H

/* The policy's decision about one OOM in `scope`: 1 if it freed memory. */
static int decide(struct oom_control *oc, struct mem_cgroup *scope);

static int handle_oom(struct bpf_oom_ctx *oom_ctx, struct oom_control *oc)
{
	struct mem_cgroup *memcg = oc->memcg, *root;
	int ret;

	event_init(oom_ctx, oc);
	if (memcg)
		return decide(oc, memcg);
	root = bpf_get_root_mem_cgroup();
	if (!root) {
		event_send(ACTION_DECLINED, REASON_SYSTEM_WIDE_OOM);
		return 0;
	}
	ret = decide(oc, root);
	bpf_put_mem_cgroup(root);
	return ret;
}

/*
 * The next leaf (a cgroup without descendants) of a css walk begun under
 * bpf_rcu_read_lock(), or NULL at the end.
 */
static __always_inline struct cgroup_subsys_state *next_leaf(struct bpf_iter_css *it)
{
	struct cgroup_subsys_state *css;

	while ((css = bpf_iter_css_next(it)))
		if (!css->cgroup->nr_descendants)
			return css;
	return NULL;
}

#endif
