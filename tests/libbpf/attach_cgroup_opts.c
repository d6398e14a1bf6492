// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Calls our libbpf's bpf_map__attach_cgroup_opts() (patch 0003) the way a C
 * user of the patched libbpf would: linked against libbpf.a by symbol name.
 *
 * usage: attach_cgroup_opts OBJECT MAP CC_NAME CGROUP_DIR
 *
 * Opens and loads OBJECT with struct_ops map MAP renamed CC_NAME (a
 * tcp_congestion_ops name is global: a test run picks its own), then prints
 * one line per call, "<case> errno=<n> link=<0|1> left=<n>": the errno the
 * call left (0 on success), whether it returned a link, and how many
 * struct_ops links of MAP the kernel still has afterwards.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

/* Struct_ops links whose map is map_id, counted through the kernel's link ids. */
static int links_of_map(__u32 map_id)
{
	__u32 id = 0;
	int count = 0;

	while (!bpf_link_get_next_id(id, &id)) {
		struct bpf_link_info info;
		__u32 len = sizeof(info);
		int fd = bpf_link_get_fd_by_id(id);

		if (fd < 0)
			continue;
		memset(&info, 0, sizeof(info));
		if (!bpf_link_get_info_by_fd(fd, &info, &len) &&
		    info.type == BPF_LINK_TYPE_STRUCT_OPS && info.struct_ops.map_id == map_id)
			count++;
		close(fd);
	}
	return count;
}

/* Write name into the struct_ops value's "name" member before load. */
static int rename_ops(struct bpf_object *obj, struct bpf_map *map, const char *name)
{
	const struct btf *btf = bpf_object__btf(obj);
	const struct btf_type *t = btf__type_by_id(btf, bpf_map__btf_value_type_id(map));
	const struct btf_member *m = btf_members(t);
	size_t size;
	char *value = bpf_map__initial_value(map, &size);
	int i;

	for (i = 0; i < btf_vlen(t); i++, m++) {
		if (!strcmp(btf__name_by_offset(btf, m->name_off), "name")) {
			strncpy(value + m->offset / 8, name, 15);
			return 0;
		}
	}
	return -1;
}

static void report(const char *label, struct bpf_link *link, __u32 map_id)
{
	int code = link ? 0 : errno;

	printf("%s errno=%d link=%d left=%d\n", label, code, link != NULL, links_of_map(map_id));
	bpf_link__destroy(link);
}

int main(int argc, char **argv)
{
	LIBBPF_OPTS(bpf_cgroup_opts, both, .relative_fd = 1, .relative_id = 1);
	struct bpf_object *obj;
	struct bpf_map *map;
	struct bpf_map_info info;
	__u32 len = sizeof(info);
	int cgroup_fd;

	if (argc != 5) {
		fprintf(stderr, "usage: %s OBJECT MAP CC_NAME CGROUP_DIR\n", argv[0]);
		return 2;
	}
	obj = bpf_object__open_file(argv[1], NULL);
	map = obj ? bpf_object__find_map_by_name(obj, argv[2]) : NULL;
	if (!map || rename_ops(obj, map, argv[3]) || bpf_object__load(obj)) {
		fprintf(stderr, "cannot open and load %s with map %s\n", argv[1], argv[2]);
		return 1;
	}
	memset(&info, 0, sizeof(info));
	cgroup_fd = open(argv[4], O_RDONLY | O_DIRECTORY);
	if (cgroup_fd < 0 || bpf_map_get_info_by_fd(bpf_map__fd(map), &info, &len)) {
		fprintf(stderr, "cannot open %s or query the map\n", argv[4]);
		return 1;
	}
	report("cgroup", bpf_map__attach_cgroup_opts(map, cgroup_fd, NULL), info.id);
	report("both_relatives", bpf_map__attach_cgroup_opts(map, cgroup_fd, &both), info.id);
	report("bad_fd", bpf_map__attach_cgroup_opts(map, -1, NULL), info.id);
	close(cgroup_fd);
	bpf_object__close(obj);
	return 0;
}
