/* Kernel UAPI (linux/bpf.h, linux/btf.h as bundled and patched in libbpf):
 * integer types, the constants bpfoom uses, and the info structs.
 * Values and struct layouts are filled in by the compiler ("...").
 */
typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef int __s32;
typedef unsigned long long __u64;
typedef long long __s64;

#define BPF_OBJ_NAME_LEN ...
#define BPF_TAG_SIZE ...

/* map update flags */
#define BPF_ANY ...
#define BPF_NOEXIST ...
#define BPF_EXIST ...
#define BPF_F_LOCK ...

/* map creation flags */
#define BPF_F_NO_PREALLOC ...
#define BPF_F_RDONLY ...
#define BPF_F_WRONLY ...
#define BPF_F_RDONLY_PROG ...
#define BPF_F_WRONLY_PROG ...
#define BPF_F_MMAPABLE ...
#define BPF_F_LINK ...

/* attach ordering flags (BPF_F_LINK above doubles as "the anchor is a link") */
#define BPF_F_BEFORE ...
#define BPF_F_AFTER ...
#define BPF_F_ID ...

/* program load flags */
#define BPF_F_SLEEPABLE ...

enum bpf_map_type {
	BPF_MAP_TYPE_UNSPEC,
	BPF_MAP_TYPE_HASH,
	BPF_MAP_TYPE_ARRAY,
	BPF_MAP_TYPE_PROG_ARRAY,
	BPF_MAP_TYPE_PERF_EVENT_ARRAY,
	BPF_MAP_TYPE_PERCPU_HASH,
	BPF_MAP_TYPE_PERCPU_ARRAY,
	BPF_MAP_TYPE_LRU_HASH,
	BPF_MAP_TYPE_LRU_PERCPU_HASH,
	BPF_MAP_TYPE_ARRAY_OF_MAPS,
	BPF_MAP_TYPE_HASH_OF_MAPS,
	BPF_MAP_TYPE_CGROUP_STORAGE,
	BPF_MAP_TYPE_QUEUE,
	BPF_MAP_TYPE_STACK,
	BPF_MAP_TYPE_SK_STORAGE,
	BPF_MAP_TYPE_STRUCT_OPS,
	BPF_MAP_TYPE_RINGBUF,
	BPF_MAP_TYPE_INODE_STORAGE,
	BPF_MAP_TYPE_TASK_STORAGE,
	BPF_MAP_TYPE_BLOOM_FILTER,
	BPF_MAP_TYPE_USER_RINGBUF,
	BPF_MAP_TYPE_CGRP_STORAGE,
	BPF_MAP_TYPE_ARENA,
	...
};

enum bpf_prog_type {
	BPF_PROG_TYPE_UNSPEC,
	BPF_PROG_TYPE_SOCKET_FILTER,
	BPF_PROG_TYPE_KPROBE,
	BPF_PROG_TYPE_TRACEPOINT,
	BPF_PROG_TYPE_PERF_EVENT,
	BPF_PROG_TYPE_CGROUP_SKB,
	BPF_PROG_TYPE_RAW_TRACEPOINT,
	BPF_PROG_TYPE_TRACING,
	BPF_PROG_TYPE_STRUCT_OPS,
	BPF_PROG_TYPE_EXT,
	BPF_PROG_TYPE_LSM,
	BPF_PROG_TYPE_SYSCALL,
	...
};

enum bpf_attach_type {
	BPF_CGROUP_INET_INGRESS,
	BPF_TRACE_FENTRY,
	BPF_TRACE_FEXIT,
	BPF_MODIFY_RETURN,
	BPF_LSM_MAC,
	BPF_TRACE_ITER,
	BPF_STRUCT_OPS,
	...
};

enum bpf_link_type {
	BPF_LINK_TYPE_UNSPEC,
	BPF_LINK_TYPE_RAW_TRACEPOINT,
	BPF_LINK_TYPE_TRACING,
	BPF_LINK_TYPE_CGROUP,
	BPF_LINK_TYPE_ITER,
	BPF_LINK_TYPE_NETNS,
	BPF_LINK_TYPE_XDP,
	BPF_LINK_TYPE_PERF_EVENT,
	BPF_LINK_TYPE_KPROBE_MULTI,
	BPF_LINK_TYPE_STRUCT_OPS,
	BPF_LINK_TYPE_NETFILTER,
	BPF_LINK_TYPE_TCX,
	BPF_LINK_TYPE_UPROBE_MULTI,
	BPF_LINK_TYPE_NETKIT,
	BPF_LINK_TYPE_SOCKMAP,
	...
};

struct bpf_prog_info {
	__u32 type;
	__u32 id;
	__u8 tag[...];
	__u32 jited_prog_len;
	__u32 xlated_prog_len;
	__u64 load_time;
	__u32 created_by_uid;
	__u32 nr_map_ids;
	__u64 map_ids;
	char name[...];
	__u32 ifindex;
	__u32 btf_id;
	__u64 run_time_ns;
	__u64 run_cnt;
	__u64 recursion_misses;
	__u32 verified_insns;
	__u32 attach_btf_obj_id;
	__u32 attach_btf_id;
	...;
};

struct bpf_map_info {
	__u32 type;
	__u32 id;
	__u32 key_size;
	__u32 value_size;
	__u32 max_entries;
	__u32 map_flags;
	char name[...];
	__u32 ifindex;
	__u32 btf_vmlinux_value_type_id;
	__u32 btf_id;
	__u32 btf_key_type_id;
	__u32 btf_value_type_id;
	__u32 btf_vmlinux_id;
	__u64 map_extra;
	...;
};

struct bpf_btf_info {
	__u64 btf;
	__u32 btf_size;
	__u32 id;
	__u64 name;
	__u32 name_len;
	__u32 kernel_btf;
	...;
};

/* cgroup iterators: where a walk starts and in which order */
enum bpf_cgroup_iter_order {
	BPF_CGROUP_ITER_ORDER_UNSPEC,
	BPF_CGROUP_ITER_SELF_ONLY,
	BPF_CGROUP_ITER_DESCENDANTS_PRE,
	BPF_CGROUP_ITER_DESCENDANTS_POST,
	BPF_CGROUP_ITER_ANCESTORS_UP,
	...
};

/* Declared whole: cffi checks every member's layout against the header. */
union bpf_iter_link_info {
	struct {
		__u32 map_fd;
	} map;
	struct {
		enum bpf_cgroup_iter_order order;
		__u32 cgroup_fd;
		__u64 cgroup_id;
	} cgroup;
	struct {
		__u32 tid;
		__u32 pid;
		__u32 pid_fd;
	} task;
};

/* Only the union members bpfoom reads are declared, each with its exact
 * layout (cffi cannot let the compiler complete an anonymous member); the
 * build checks every declared offset and size against the real header.
 * struct_ops.cgroup_id comes from our patch 0002; kernels that do not report
 * a cgroup leave it 0.
 */
struct bpf_link_info {
	__u32 type;
	__u32 id;
	__u32 prog_id;
	union {
		struct {
			__u32 attach_type;
			__u32 target_obj_id;
			__u32 target_btf_id;
			__u32 _pad;
			__u64 cookie;
		} tracing;
		struct {
			__u64 cgroup_id;
			__u32 attach_type;
		} cgroup;
		struct {
			__u32 netns_ino;
			__u32 attach_type;
		} netns;
		struct {
			__u32 ifindex;
		} xdp;
		struct {
			__u32 map_id;
			__u32 _pad;
			__u64 cgroup_id;
		} struct_ops;
	};
	...;
};

/* linux/btf.h */
#define BTF_MAX_TYPE ...
#define BTF_MAX_VLEN ...

enum {
	BTF_KIND_UNKN,
	BTF_KIND_INT,
	BTF_KIND_PTR,
	BTF_KIND_ARRAY,
	BTF_KIND_STRUCT,
	BTF_KIND_UNION,
	BTF_KIND_ENUM,
	BTF_KIND_FWD,
	BTF_KIND_TYPEDEF,
	BTF_KIND_VOLATILE,
	BTF_KIND_CONST,
	BTF_KIND_RESTRICT,
	BTF_KIND_FUNC,
	BTF_KIND_FUNC_PROTO,
	BTF_KIND_VAR,
	BTF_KIND_DATASEC,
	BTF_KIND_FLOAT,
	BTF_KIND_DECL_TAG,
	BTF_KIND_TYPE_TAG,
	BTF_KIND_ENUM64,
	NR_BTF_KINDS,
	BTF_KIND_MAX,
	...
};

/* BTF_KIND_INT encoding bits (btf_int_encoding()) */
#define BTF_INT_SIGNED ...
#define BTF_INT_CHAR ...
#define BTF_INT_BOOL ...

enum {
	BTF_VAR_STATIC,
	BTF_VAR_GLOBAL_ALLOCATED,
	BTF_VAR_GLOBAL_EXTERN,
	...
};

enum btf_func_linkage {
	BTF_FUNC_STATIC,
	BTF_FUNC_GLOBAL,
	BTF_FUNC_EXTERN,
	...
};

struct btf_type {
	__u32 name_off;
	__u32 info;
	union {
		__u32 size;
		__u32 type;
	};
};

struct btf_enum {
	__u32 name_off;
	__s32 val;
};

struct btf_enum64 {
	__u32 name_off;
	__u32 val_lo32;
	__u32 val_hi32;
};

struct btf_array {
	__u32 type;
	__u32 index_type;
	__u32 nelems;
};

struct btf_member {
	__u32 name_off;
	__u32 type;
	__u32 offset;
};

struct btf_param {
	__u32 name_off;
	__u32 type;
};

struct btf_var {
	__u32 linkage;
};

struct btf_var_secinfo {
	__u32 type;
	__u32 offset;
	__u32 size;
};

struct btf_decl_tag {
	__s32 component_idx;
};
