/* bpf/btf.h: loading and walking BTF, including the static inline helpers
 * (cffi compiles a call to each, so they work like exported functions).
 */
struct btf;
struct btf_ext;

void btf__free(struct btf *btf);
struct btf *btf__parse(const char *path, struct btf_ext **btf_ext);
struct btf *btf__parse_elf(const char *path, struct btf_ext **btf_ext);
struct btf *btf__parse_raw(const char *path);
struct btf *btf__load_vmlinux_btf(void);
struct btf *btf__load_module_btf(const char *module_name, struct btf *vmlinux_btf);
struct btf *btf__load_from_kernel_by_id(__u32 id);
struct btf *btf__load_from_kernel_by_id_split(__u32 id, struct btf *base_btf);

__s32 btf__find_by_name(const struct btf *btf, const char *type_name);
__s32 btf__find_by_name_kind(const struct btf *btf, const char *type_name, __u32 kind);
__u32 btf__type_cnt(const struct btf *btf);
const struct btf *btf__base_btf(const struct btf *btf);
const struct btf_type *btf__type_by_id(const struct btf *btf, __u32 id);
size_t btf__pointer_size(const struct btf *btf);
__s64 btf__resolve_size(const struct btf *btf, __u32 type_id);
int btf__resolve_type(const struct btf *btf, __u32 type_id);
int btf__align_of(const struct btf *btf, __u32 id);
int btf__fd(const struct btf *btf);
const char *btf__name_by_offset(const struct btf *btf, __u32 offset);
const char *btf__str_by_offset(const struct btf *btf, __u32 offset);

__u16 btf_kind(const struct btf_type *t);
__u16 btf_vlen(const struct btf_type *t);
bool btf_kflag(const struct btf_type *t);
bool btf_is_void(const struct btf_type *t);
bool btf_is_int(const struct btf_type *t);
bool btf_is_ptr(const struct btf_type *t);
bool btf_is_array(const struct btf_type *t);
bool btf_is_struct(const struct btf_type *t);
bool btf_is_union(const struct btf_type *t);
bool btf_is_composite(const struct btf_type *t);
bool btf_is_enum(const struct btf_type *t);
bool btf_is_enum64(const struct btf_type *t);
bool btf_is_any_enum(const struct btf_type *t);
bool btf_is_fwd(const struct btf_type *t);
bool btf_is_typedef(const struct btf_type *t);
bool btf_is_volatile(const struct btf_type *t);
bool btf_is_const(const struct btf_type *t);
bool btf_is_restrict(const struct btf_type *t);
bool btf_is_mod(const struct btf_type *t);
bool btf_is_func(const struct btf_type *t);
bool btf_is_func_proto(const struct btf_type *t);
bool btf_is_var(const struct btf_type *t);
bool btf_is_datasec(const struct btf_type *t);
bool btf_is_float(const struct btf_type *t);
bool btf_is_decl_tag(const struct btf_type *t);
bool btf_is_type_tag(const struct btf_type *t);
__u8 btf_int_encoding(const struct btf_type *t);
__u8 btf_int_offset(const struct btf_type *t);
__u8 btf_int_bits(const struct btf_type *t);
struct btf_array *btf_array(const struct btf_type *t);
struct btf_enum *btf_enum(const struct btf_type *t);
struct btf_enum64 *btf_enum64(const struct btf_type *t);
__u64 btf_enum64_value(const struct btf_enum64 *e);
struct btf_member *btf_members(const struct btf_type *t);
__u32 btf_member_bit_offset(const struct btf_type *t, __u32 member_idx);
__u32 btf_member_bitfield_size(const struct btf_type *t, __u32 member_idx);
struct btf_param *btf_params(const struct btf_type *t);
struct btf_var *btf_var(const struct btf_type *t);
struct btf_var_secinfo *btf_var_secinfos(const struct btf_type *t);
struct btf_decl_tag *btf_decl_tag(const struct btf_type *t);
