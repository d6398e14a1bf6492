/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* What the C references of the benchmarks share: a clock, and a quiet libbpf. */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <stdarg.h>
#include <time.h>
#include <bpf/libbpf.h>

static inline long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Like a quiet application: libbpf's messages are dropped, not printed. */
static inline int drop_libbpf_messages(enum libbpf_print_level level, const char *format,
				       va_list args)
{
	return 0;
}

#endif
