/* The libc calls bpfoom makes besides libbpf's: what a cgroup v2 directory is
 * (fstatfs), opening a cgroup by id (a kernfs file handle), watching cgroup
 * directories (inotify).  Through this module rather than ctypes, so the
 * binding stays one cffi extension.
 */
struct statfs {
	long f_type;
	...;
};
int fstatfs(int fd, struct statfs *buf);

struct file_handle {
	unsigned int handle_bytes;
	int handle_type;
	...;
};
int open_by_handle_at(int mount_fd, struct file_handle *handle, int flags);

int inotify_init1(int flags);
int inotify_add_watch(int fd, const char *pathname, uint32_t mask);
int inotify_rm_watch(int fd, int wd);
