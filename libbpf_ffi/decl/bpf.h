/* bpf/bpf.h: thin wrappers of the bpf() syscall, by fd and by id. */
int bpf_map_update_elem(int fd, const void *key, const void *value, __u64 flags);
int bpf_map_lookup_elem(int fd, const void *key, void *value);
int bpf_map_lookup_elem_flags(int fd, const void *key, void *value, __u64 flags);
int bpf_map_lookup_and_delete_elem(int fd, const void *key, void *value);
int bpf_map_delete_elem(int fd, const void *key);
int bpf_map_get_next_key(int fd, const void *key, void *next_key);
int bpf_map_freeze(int fd);

/* many elements per syscall (BPF_MAP_*_BATCH); not every map type has them */
struct bpf_map_batch_opts {
	size_t sz;
	__u64 elem_flags;
	__u64 flags;
	...;
};
int bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values,
			 __u32 *count, const struct bpf_map_batch_opts *opts);
int bpf_map_lookup_and_delete_batch(int fd, void *in_batch, void *out_batch, void *keys,
				    void *values, __u32 *count, const struct bpf_map_batch_opts *opts);
int bpf_map_update_batch(int fd, const void *keys, const void *values, __u32 *count,
			 const struct bpf_map_batch_opts *opts);
int bpf_map_delete_batch(int fd, const void *keys, __u32 *count,
			 const struct bpf_map_batch_opts *opts);

struct bpf_btf_load_opts {
	size_t sz;
	char *log_buf;
	__u32 log_level;
	__u32 log_size;
	...;
};
int bpf_btf_load(const void *btf_data, size_t btf_size, struct bpf_btf_load_opts *opts);

struct bpf_obj_pin_opts {
	size_t sz;
	__u32 file_flags;
	int path_fd;
	...;
};
int bpf_obj_pin(int fd, const char *pathname);
int bpf_obj_pin_opts(int fd, const char *pathname, const struct bpf_obj_pin_opts *opts);

struct bpf_obj_get_opts {
	size_t sz;
	__u32 file_flags;
	int path_fd;
	...;
};
int bpf_obj_get(const char *pathname);
int bpf_obj_get_opts(const char *pathname, const struct bpf_obj_get_opts *opts);

int bpf_link_detach(int link_fd);

struct bpf_link_update_opts {
	size_t sz;
	__u32 flags;
	__u32 old_prog_fd;
	__u32 old_map_fd;
	...;
};
int bpf_link_update(int link_fd, int new_prog_fd, const struct bpf_link_update_opts *opts);

int bpf_prog_get_next_id(__u32 start_id, __u32 *next_id);
int bpf_map_get_next_id(__u32 start_id, __u32 *next_id);
int bpf_btf_get_next_id(__u32 start_id, __u32 *next_id);
int bpf_link_get_next_id(__u32 start_id, __u32 *next_id);

int bpf_prog_get_fd_by_id(__u32 id);
int bpf_map_get_fd_by_id(__u32 id);
int bpf_btf_get_fd_by_id(__u32 id);
int bpf_link_get_fd_by_id(__u32 id);

int bpf_obj_get_info_by_fd(int bpf_fd, void *info, __u32 *info_len);
int bpf_prog_get_info_by_fd(int prog_fd, struct bpf_prog_info *info, __u32 *info_len);
int bpf_map_get_info_by_fd(int map_fd, struct bpf_map_info *info, __u32 *info_len);
int bpf_btf_get_info_by_fd(int btf_fd, struct bpf_btf_info *info, __u32 *info_len);
int bpf_link_get_info_by_fd(int link_fd, struct bpf_link_info *info, __u32 *info_len);

/* an iterator link's seq_file: each fd made by bpf_iter_create is one walk */
int bpf_iter_create(int link_fd);

/* running a loaded program once (BPF_PROG_TEST_RUN), e.g. SEC("syscall") */
struct bpf_test_run_opts {
	size_t sz;
	const void *data_in;
	void *data_out;
	__u32 data_size_in;
	__u32 data_size_out;
	const void *ctx_in;
	void *ctx_out;
	__u32 ctx_size_in;
	__u32 ctx_size_out;
	__u32 retval;
	int repeat;
	__u32 duration;
	__u32 flags;
	__u32 cpu;
	__u32 batch_size;
	...;
};
int bpf_prog_test_run_opts(int prog_fd, struct bpf_test_run_opts *opts);
