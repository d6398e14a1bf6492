/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * What a policy says about itself, carried in its own object: bpfoom reads
 * the `.bpfoom.meta` section (its layout described by the object's BTF) to
 * list the policy, check tunable values against their ranges and document
 * them.  bpfoom reads the section's bytes from the ELF file; libbpf skips
 * the section, so no map is made of it and none of it is loaded.
 *
 *	BPFOOM_DESCRIPTION("kill the largest leaf memcg ...");
 *
 *	__u64 min_victim_bytes = 0;
 *	BPFOOM_TUNABLE_RANGE(min_victim_bytes, 0, 1ULL << 40,
 *			     "decline when the largest leaf is smaller than this");
 *	const volatile bool exclude_page_cache = true;
 *	BPFOOM_TUNABLE(exclude_page_cache, "rank leaves by usage minus page cache");
 *
 * A tunable's type and default are the global's own (BTF and its initial
 * value); `const volatile` ones (.rodata) can only be set at load.  Ranges are
 * inclusive, evaluated by the compiler in the tunable's type, and only for
 * scalar tunables.  The kernel features a policy needs are not declared: they
 * are its struct_ops type and the kfuncs its BTF names.
 */
#ifndef BPFOOM_POLICY_META_H
#define BPFOOM_POLICY_META_H

#define BPFOOM_META_SECTION ".bpfoom.meta"
#define __bpfoom_meta __attribute__((section(BPFOOM_META_SECTION), used))

/* One sentence or paragraph: what the policy does, for `bpfoom policies`. */
#define BPFOOM_DESCRIPTION(text) \
	const char bpfoom_description[] __bpfoom_meta = text

/* Declare the global `var` (defined before) a tunable, documented by `text`. */
#define BPFOOM_TUNABLE(var, text) \
	const char bpfoom_tunable__##var[] __bpfoom_meta = text

/* The same, accepting only values from `lo` to `hi` (inclusive). */
#define BPFOOM_TUNABLE_RANGE(var, lo, hi, text) \
	const struct { \
		__typeof__(var) min; \
		__typeof__(var) max; \
		char doc[sizeof(text)]; \
	} bpfoom_tunable__##var __bpfoom_meta = { (lo), (hi), text }

#endif /* BPFOOM_POLICY_META_H */
