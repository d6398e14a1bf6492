/* Calls from C into Python (cffi API-mode externs) and the C shim behind them.
 *
 * The bpfoom layer implements both externs with @ffi.def_extern():
 *   libbpf_ffi_print(level, message): one libbpf message, already formatted
 *     (a libbpf_print_level); the return value is ignored.
 *   libbpf_ffi_ring_buffer_sample(ctx, data, size): one ring buffer record;
 *     ctx is what was passed to ring_buffer__new/add (an ffi.new_handle);
 *     return 0 to go on, a negative errno to make poll/consume stop and
 *     return it.
 */
extern "Python" int libbpf_ffi_print(enum libbpf_print_level level, const char *message);
extern "Python" int libbpf_ffi_ring_buffer_sample(void *ctx, void *data, size_t size);

/* Route libbpf's messages up to max_level (a libbpf_print_level) to
 * libbpf_ffi_print, or none with max_level -1. libbpf hands its print
 * callback a va_list, which Python cannot take, so a C shim formats each
 * message first; more verbose ones are dropped before that.
 */
void libbpf_ffi_set_print(int max_level);

/* The package version compiled into this extension, checked at import. */
static const char *const LIBBPF_FFI_PACKAGE_VERSION;
