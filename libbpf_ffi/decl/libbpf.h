/* bpf/libbpf.h (and libbpf_legacy.h's libbpf_get_error): objects, maps,
 * programs, links, ring buffers, probes.
 */
__u32 libbpf_major_version(void);
__u32 libbpf_minor_version(void);
const char *libbpf_version_string(void);

enum libbpf_errno {
	LIBBPF_ERRNO__LIBELF,
	LIBBPF_ERRNO__FORMAT,
	LIBBPF_ERRNO__KVERSION,
	LIBBPF_ERRNO__ENDIAN,
	LIBBPF_ERRNO__INTERNAL,
	LIBBPF_ERRNO__RELOC,
	LIBBPF_ERRNO__LOAD,
	LIBBPF_ERRNO__VERIFY,
	LIBBPF_ERRNO__PROG2BIG,
	LIBBPF_ERRNO__KVER,
	LIBBPF_ERRNO__PROGTYPE,
	LIBBPF_ERRNO__WRNGPID,
	LIBBPF_ERRNO__INVSEQ,
	LIBBPF_ERRNO__NLPARSE,
	...
};
int libbpf_strerror(int err, char *buf, size_t size);
long libbpf_get_error(const void *ptr);

const char *libbpf_bpf_attach_type_str(enum bpf_attach_type t);
const char *libbpf_bpf_link_type_str(enum bpf_link_type t);
const char *libbpf_bpf_map_type_str(enum bpf_map_type t);
const char *libbpf_bpf_prog_type_str(enum bpf_prog_type t);

enum libbpf_print_level {
	LIBBPF_WARN,
	LIBBPF_INFO,
	LIBBPF_DEBUG,
	...
};

/* objects */
struct bpf_object;
struct bpf_map;
struct bpf_program;
struct bpf_link;

struct bpf_object_open_opts {
	size_t sz;
	const char *object_name;
	bool relaxed_maps;
	const char *pin_root_path;
	const char *kconfig;
	const char *btf_custom_path;
	char *kernel_log_buf;
	size_t kernel_log_size;
	__u32 kernel_log_level;
	const char *bpf_token_path;
	...;
};

struct bpf_object *bpf_object__open(const char *path);
struct bpf_object *bpf_object__open_file(const char *path, const struct bpf_object_open_opts *opts);
struct bpf_object *bpf_object__open_mem(const void *obj_buf, size_t obj_buf_sz,
					const struct bpf_object_open_opts *opts);
int bpf_object__load(struct bpf_object *obj);
void bpf_object__close(struct bpf_object *obj);
const char *bpf_object__name(const struct bpf_object *obj);
struct btf *bpf_object__btf(const struct bpf_object *obj);
int bpf_object__btf_fd(const struct bpf_object *obj);

struct bpf_program *bpf_object__next_program(const struct bpf_object *obj, struct bpf_program *prog);
struct bpf_program *bpf_object__find_program_by_name(const struct bpf_object *obj, const char *name);
struct bpf_map *bpf_object__next_map(const struct bpf_object *obj, const struct bpf_map *map);
struct bpf_map *bpf_object__find_map_by_name(const struct bpf_object *obj, const char *name);
int bpf_object__find_map_fd_by_name(const struct bpf_object *obj, const char *name);

/* programs */
const char *bpf_program__name(const struct bpf_program *prog);
const char *bpf_program__section_name(const struct bpf_program *prog);
bool bpf_program__autoload(const struct bpf_program *prog);
int bpf_program__set_autoload(struct bpf_program *prog, bool autoload);
bool bpf_program__autoattach(const struct bpf_program *prog);
void bpf_program__set_autoattach(struct bpf_program *prog, bool autoattach);
int bpf_program__fd(const struct bpf_program *prog);
enum bpf_prog_type bpf_program__type(const struct bpf_program *prog);
int bpf_program__set_type(struct bpf_program *prog, enum bpf_prog_type type);
enum bpf_attach_type bpf_program__expected_attach_type(const struct bpf_program *prog);
__u32 bpf_program__flags(const struct bpf_program *prog);
int bpf_program__set_flags(struct bpf_program *prog, __u32 flags);
size_t bpf_program__insn_cnt(const struct bpf_program *prog);
__u32 bpf_program__log_level(const struct bpf_program *prog);
int bpf_program__set_log_level(struct bpf_program *prog, __u32 log_level);
const char *bpf_program__log_buf(const struct bpf_program *prog, size_t *log_size);
int bpf_program__set_log_buf(struct bpf_program *prog, char *log_buf, size_t log_size);
int bpf_program__pin(struct bpf_program *prog, const char *path);
int bpf_program__unpin(struct bpf_program *prog, const char *path);

/* maps */
int bpf_map__fd(const struct bpf_map *map);
const char *bpf_map__name(const struct bpf_map *map);
enum bpf_map_type bpf_map__type(const struct bpf_map *map);
__u32 bpf_map__max_entries(const struct bpf_map *map);
int bpf_map__set_max_entries(struct bpf_map *map, __u32 max_entries);
__u32 bpf_map__map_flags(const struct bpf_map *map);
int bpf_map__set_map_flags(struct bpf_map *map, __u32 flags);
__u32 bpf_map__key_size(const struct bpf_map *map);
__u32 bpf_map__value_size(const struct bpf_map *map);
int bpf_map__set_value_size(struct bpf_map *map, __u32 size);
__u32 bpf_map__btf_key_type_id(const struct bpf_map *map);
__u32 bpf_map__btf_value_type_id(const struct bpf_map *map);
__u64 bpf_map__map_extra(const struct bpf_map *map);
int bpf_map__set_initial_value(struct bpf_map *map, const void *data, size_t size);
void *bpf_map__initial_value(const struct bpf_map *map, size_t *psize);
bool bpf_map__is_internal(const struct bpf_map *map);
bool bpf_map__autocreate(const struct bpf_map *map);
int bpf_map__set_autocreate(struct bpf_map *map, bool autocreate);
bool bpf_map__autoattach(const struct bpf_map *map);
int bpf_map__set_autoattach(struct bpf_map *map, bool autoattach);
int bpf_map__set_pin_path(struct bpf_map *map, const char *path);
int bpf_map__reuse_fd(struct bpf_map *map, int fd);
const char *bpf_map__pin_path(const struct bpf_map *map);
bool bpf_map__is_pinned(const struct bpf_map *map);
int bpf_map__pin(struct bpf_map *map, const char *path);
int bpf_map__unpin(struct bpf_map *map, const char *path);
int bpf_map__lookup_elem(const struct bpf_map *map, const void *key, size_t key_sz,
			 void *value, size_t value_sz, __u64 flags);
int bpf_map__update_elem(const struct bpf_map *map, const void *key, size_t key_sz,
			 const void *value, size_t value_sz, __u64 flags);
int bpf_map__delete_elem(const struct bpf_map *map, const void *key, size_t key_sz, __u64 flags);
int bpf_map__lookup_and_delete_elem(const struct bpf_map *map, const void *key, size_t key_sz,
				    void *value, size_t value_sz, __u64 flags);
int bpf_map__get_next_key(const struct bpf_map *map, const void *cur_key, void *next_key,
			  size_t key_sz);

/* struct_ops attach; the _opts variant comes from our patch 0001 */
struct bpf_struct_ops_opts {
	size_t sz;
	__u32 flags;
	__u32 relative_fd;
	__u64 expected_revision;
	...;
};
struct bpf_link *bpf_map__attach_struct_ops(const struct bpf_map *map);
struct bpf_link *bpf_map__attach_struct_ops_opts(const struct bpf_map *map,
						 const struct bpf_struct_ops_opts *opts);
/* the generic cgroup struct_ops link (cgroup in target_fd); our patch 0003 */
struct bpf_cgroup_opts {
	size_t sz;
	__u32 flags;
	__u32 relative_fd;
	__u32 relative_id;
	__u64 expected_revision;
	...;
};
struct bpf_link *bpf_map__attach_cgroup_opts(const struct bpf_map *map, int cgroup_fd,
					     const struct bpf_cgroup_opts *opts);

/* links */
struct bpf_link *bpf_link__open(const char *path);
int bpf_link__fd(const struct bpf_link *link);
const char *bpf_link__pin_path(const struct bpf_link *link);
int bpf_link__pin(struct bpf_link *link, const char *path);
int bpf_link__unpin(struct bpf_link *link);
int bpf_link__update_map(struct bpf_link *link, const struct bpf_map *map);
int bpf_link__update_program(struct bpf_link *link, struct bpf_program *prog);
void bpf_link__disconnect(struct bpf_link *link);
int bpf_link__detach(struct bpf_link *link);
int bpf_link__destroy(struct bpf_link *link);
struct bpf_link *bpf_program__attach(const struct bpf_program *prog);
struct bpf_link *bpf_program__attach_tracepoint(const struct bpf_program *prog,
						 const char *tp_category, const char *tp_name);
struct bpf_link *bpf_program__attach_raw_tracepoint(const struct bpf_program *prog,
						    const char *tp_name);
struct bpf_link *bpf_program__attach_kprobe(const struct bpf_program *prog, bool retprobe,
					    const char *func_name);
struct bpf_link *bpf_program__attach_cgroup(const struct bpf_program *prog, int cgroup_fd);

/* iterator programs (SEC("iter/...")): link_info says what to walk */
struct bpf_iter_attach_opts {
	size_t sz;
	union bpf_iter_link_info *link_info;
	__u32 link_info_len;
	...;
};
struct bpf_link *bpf_program__attach_iter(const struct bpf_program *prog,
					  const struct bpf_iter_attach_opts *opts);

/* ring buffers: pass libbpf_ffi_ring_buffer_sample (callbacks.h) as sample_cb */
struct ring_buffer;
typedef int (*ring_buffer_sample_fn)(void *ctx, void *data, size_t size);
struct ring_buffer_opts {
	size_t sz;
	...;
};
struct ring_buffer *ring_buffer__new(int map_fd, ring_buffer_sample_fn sample_cb, void *ctx,
				     const struct ring_buffer_opts *opts);
void ring_buffer__free(struct ring_buffer *rb);
int ring_buffer__add(struct ring_buffer *rb, int map_fd, ring_buffer_sample_fn sample_cb, void *ctx);
int ring_buffer__poll(struct ring_buffer *rb, int timeout_ms);
int ring_buffer__consume(struct ring_buffer *rb);
int ring_buffer__consume_n(struct ring_buffer *rb, size_t n);
int ring_buffer__epoll_fd(const struct ring_buffer *rb);

/* probes */
int libbpf_probe_bpf_prog_type(enum bpf_prog_type prog_type, const void *opts);
int libbpf_probe_bpf_map_type(enum bpf_map_type map_type, const void *opts);
int libbpf_probe_bpf_helper(enum bpf_prog_type prog_type, int helper_id, const void *opts);
int libbpf_num_possible_cpus(void);
