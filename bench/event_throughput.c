// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The C reference bench/event_throughput.py compares bpfoom against: the same
 * feeder object and ring buffer, drained by the same patched static libbpf
 * from C.
 *
 *   event_throughput OBJECT RING_BYTES RECORDS ROUNDS
 *
 * Each round fills the ring with RECORDS decision records (BPF_PROG_TEST_RUN
 * of the feeder's SEC("syscall") program `feed`, at most 512 per run) and
 * then drains it with ring_buffer__consume(); the callback copies each
 * record out of the ring and reads the fields a consumer would look at
 * first, C's equivalent of decoding it.  Prints one JSON line: records
 * drained and nanoseconds spent filling and draining, per round.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "bench_common.h"

#define PER_RUN 512
#define MAX_RECORD 4096

struct feed_args {
	unsigned int count;
};

struct drained {
	long records;
	unsigned long long checksum;	/* keeps the reads from being optimised away */
};

static int fail(const char *what, int err)
{
	fprintf(stderr, "event_throughput: %s failed: %s\n", what, strerror(err));
	return 1;
}

/* Copy the record out (the ring's memory is reused once we return) and read
 * schema, action, victim cgroup and usage, as a C consumer would. */
static int on_record(void *ctx, void *data, size_t size)
{
	struct drained *drained = ctx;
	unsigned long long record[MAX_RECORD / 8];
	unsigned short schema, action;

	if (size > sizeof(record))
		return -E2BIG;
	memcpy(record, data, size);
	memcpy(&schema, (char *)record, sizeof(schema));
	memcpy(&action, (char *)record + 4, sizeof(action));
	/* victim_cgroup_id and usage_bytes: the 8th and 9th u64 of the layout */
	drained->checksum += schema + action + record[8] + record[9];
	drained->records++;
	return 0;
}

int main(int argc, char **argv)
{
	struct drained drained = { 0 };
	struct bpf_object *obj;
	struct bpf_program *prog;
	struct bpf_map *events;
	struct ring_buffer *ring;
	long records, rounds;
	int err, prog_fd;

	if (argc != 5) {
		fprintf(stderr, "usage: %s OBJECT RING_BYTES RECORDS ROUNDS\n", argv[0]);
		return 2;
	}
	records = atol(argv[3]);
	rounds = atol(argv[4]);
	if (records < 1 || rounds < 1)
		return fail("parsing RECORDS and ROUNDS", EINVAL);
	libbpf_set_print(drop_libbpf_messages);

	obj = bpf_object__open_file(argv[1], NULL);
	if (!obj)
		return fail("bpf_object__open_file", errno);
	events = bpf_object__find_map_by_name(obj, "events");
	prog = bpf_object__find_program_by_name(obj, "feed");
	if (!events || !prog)
		return fail("finding the events map and the feed program", ENOENT);
	err = bpf_map__set_max_entries(events, (unsigned int)atol(argv[2]));
	if (!err)
		err = bpf_object__load(obj);
	if (err)
		return fail("loading the object", -err);
	prog_fd = bpf_program__fd(prog);
	ring = ring_buffer__new(bpf_map__fd(events), on_record, &drained, NULL);
	if (!ring)
		return fail("ring_buffer__new", errno);

	printf("{\"records\": %ld, \"rounds\": [", records);
	for (long round = 0; round < rounds; round++) {
		long long start, filled, drained_at;
		long before = drained.records;

		start = now_ns();
		for (long done = 0; done < records; done += PER_RUN) {
			struct feed_args args = { .count = records - done < PER_RUN ? records - done : PER_RUN };
			LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &args, .ctx_size_in = sizeof(args));

			err = bpf_prog_test_run_opts(prog_fd, &opts);
			if (err)
				return fail("bpf_prog_test_run_opts", -err);
		}
		filled = now_ns();
		err = ring_buffer__consume(ring);
		drained_at = now_ns();
		if (err < 0)
			return fail("ring_buffer__consume", -err);
		printf("%s{\"drained\": %ld, \"fill_ns\": %lld, \"drain_ns\": %lld}", round ? ", " : "",
		       drained.records - before, filled - start, drained_at - filled);
	}
	printf("], \"checksum\": %llu}\n", drained.checksum);
	ring_buffer__free(ring);
	bpf_object__close(obj);
	return 0;
}
