// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The C baseline bench/attach_cycle.py compares bpfoom against: the same
 * patched static libbpf, driven directly.
 *
 *   attach_cycle CC_OBJECT STRUCT_OPS_MAP CYCLES MAP_OBJECT MAP_NAME LOOKUPS
 *
 * Runs CYCLES open+load+attach+detach+close of CC_OBJECT's STRUCT_OPS_MAP,
 * then LOOKUPS bpf_map_lookup_elem() calls of key 1 in MAP_OBJECT's
 * MAP_NAME (a u32 -> u64 map), and prints one JSON line of timings: the
 * median cycle (robust against the odd long RCU grace period in detach) and
 * totals of the cycles and of the lookup loop.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "bench_common.h"

/* User + system CPU time of this process: unlike wall time, it ignores RCU
 * grace periods slept through in detach and other processes on the CPUs. */
static long long cpu_ns(void)
{
	struct rusage usage;

	getrusage(RUSAGE_SELF, &usage);
	return (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1000000000LL +
	       (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) * 1000LL;
}

static int compare_ns(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;

	return (x > y) - (x < y);
}

static int fail(const char *what, int err)
{
	fprintf(stderr, "attach_cycle: %s failed: %s\n", what, strerror(err));
	return 1;
}

static int attach_cycle(const char *path, const char *map_name)
{
	LIBBPF_OPTS(bpf_struct_ops_opts, opts);
	struct bpf_object *obj;
	struct bpf_map *map;
	struct bpf_link *link;
	int err;

	obj = bpf_object__open_file(path, NULL);
	if (!obj)
		return fail("bpf_object__open_file", errno);
	err = bpf_object__load(obj);
	if (err) {
		bpf_object__close(obj);
		return fail("bpf_object__load", -err);
	}
	map = bpf_object__find_map_by_name(obj, map_name);
	link = map ? bpf_map__attach_struct_ops_opts(map, &opts) : NULL;
	if (!link) {
		err = map ? errno : ENOENT;
		bpf_object__close(obj);
		return fail("bpf_map__attach_struct_ops_opts", err);
	}
	bpf_link__detach(link);
	bpf_link__destroy(link);
	bpf_object__close(obj);
	return 0;
}

static int lookup_loop(const char *path, const char *map_name, long lookups, long long *elapsed_ns)
{
	struct bpf_object *obj;
	struct bpf_map *map;
	__u32 key = 1;
	__u64 value = 42;
	long long start;
	int fd, err;

	obj = bpf_object__open_file(path, NULL);
	if (!obj)
		return fail("bpf_object__open_file", errno);
	err = bpf_object__load(obj);
	map = err ? NULL : bpf_object__find_map_by_name(obj, map_name);
	if (!map) {
		bpf_object__close(obj);
		return fail("loading the map object", err ? -err : ENOENT);
	}
	fd = bpf_map__fd(map);
	if (bpf_map_update_elem(fd, &key, &value, BPF_ANY)) {
		bpf_object__close(obj);
		return fail("bpf_map_update_elem", errno);
	}
	start = now_ns();
	for (long i = 0; i < lookups; i++) {
		if (bpf_map_lookup_elem(fd, &key, &value)) {
			bpf_object__close(obj);
			return fail("bpf_map_lookup_elem", errno);
		}
	}
	*elapsed_ns = now_ns() - start;
	bpf_object__close(obj);
	return 0;
}

int main(int argc, char **argv)
{
	long cycles, lookups;
	long long start, lookup_ns = 0, total_cycle_ns = 0, cpu_start, cycles_cpu_ns;
	long long *cycle_ns;

	if (argc != 7) {
		fprintf(stderr, "usage: %s CC_OBJECT STRUCT_OPS_MAP CYCLES MAP_OBJECT MAP_NAME LOOKUPS\n", argv[0]);
		return 2;
	}
	cycles = atol(argv[3]);
	lookups = atol(argv[6]);
	if (cycles < 1 || lookups < 1) {
		fprintf(stderr, "attach_cycle: CYCLES and LOOKUPS must be positive\n");
		return 2;
	}
	cycle_ns = calloc(cycles, sizeof(*cycle_ns));
	if (!cycle_ns)
		return fail("calloc", ENOMEM);
	libbpf_set_print(drop_libbpf_messages);

	cpu_start = cpu_ns();
	for (long i = 0; i < cycles; i++) {
		start = now_ns();
		if (attach_cycle(argv[1], argv[2]))
			return 1;
		cycle_ns[i] = now_ns() - start;
		total_cycle_ns += cycle_ns[i];
	}
	cycles_cpu_ns = cpu_ns() - cpu_start;
	qsort(cycle_ns, cycles, sizeof(*cycle_ns), compare_ns);

	if (lookup_loop(argv[4], argv[5], lookups, &lookup_ns))
		return 1;
	printf("{\"cycles\": %ld, \"median_cycle_ns\": %lld, \"total_cycle_ns\": %lld, "
	       "\"cycles_cpu_ns\": %lld, \"lookups\": %ld, \"lookup_ns\": %lld}\n",
	       cycles, cycle_ns[cycles / 2], total_cycle_ns, cycles_cpu_ns, lookups, lookup_ns);
	free(cycle_ns);
	return 0;
}
