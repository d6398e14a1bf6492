// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Time spent in the kernel's OOM path, per function, with fentry/fexit:
 * out_of_memory (everything), bpf_handle_oom (the attached policies, their
 * kill included), and the two kills: oom_kill_process (the kernel's) and bpf_oom_kill_process (a
 * policy's).  out_of_memory runs under oom_lock, one OOM at a time, so one
 * start time per function is enough.  The benchmarks build this at run time
 * and load only the programs whose function the kernel has.
 */
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef int __s32;
typedef unsigned short __u16;
typedef unsigned char __u8;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

struct task_struct {
	int pid;
} __attribute__((preserve_access_index));

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define SIGKILL 9
#define TRACE_SIGNAL_DELIVERED 0

enum { OUT_OF_MEMORY, BPF_HANDLE_OOM, OOM_KILL_PROCESS, BPF_OOM_KILL_PROCESS, NR };

__u64 started[NR];
__u64 calls[NR];
__u64 total_ns[NR];
/* time and calls inside the first out_of_memory since user space zeroed ooms */
__u64 ooms;
__u64 first_ns[NR];
__u64 first_calls[NR];
__u64 first_oom_at;
__u64 victim_signalled_at;
__u64 victim_marked_at;
__u64 victim_exited_at;
__s32 victim_pid;
__s32 marked_pid;

static void enter(int fn)
{
	__u64 now = bpf_ktime_get_ns();

	if (fn == OUT_OF_MEMORY && ++ooms == 1)
		first_oom_at = now;
	started[fn] = now;
}

static void leave(int fn)
{
	__u64 spent = bpf_ktime_get_ns() - started[fn];

	if (!started[fn])
		return;
	started[fn] = 0;
	if (ooms == 1) {
		first_ns[fn] += spent;
		first_calls[fn]++;
	}
	calls[fn]++;
	total_ns[fn] += spent;
}

SEC("fentry/out_of_memory")
int BPF_PROG(oom_enter) { enter(OUT_OF_MEMORY); return 0; }
SEC("fexit/out_of_memory")
int BPF_PROG(oom_exit) { leave(OUT_OF_MEMORY); return 0; }
SEC("fentry/bpf_handle_oom")
int BPF_PROG(handle_enter) { enter(BPF_HANDLE_OOM); return 0; }
SEC("fexit/bpf_handle_oom")
int BPF_PROG(handle_exit) { leave(BPF_HANDLE_OOM); return 0; }
SEC("fentry/oom_kill_process")
int BPF_PROG(kill_enter) { enter(OOM_KILL_PROCESS); return 0; }
SEC("fexit/oom_kill_process")
int BPF_PROG(kill_exit) { leave(OOM_KILL_PROCESS); return 0; }
SEC("fentry/bpf_oom_kill_process")
int BPF_PROG(bpf_kill_enter) { enter(BPF_OOM_KILL_PROCESS); return 0; }
SEC("fexit/bpf_oom_kill_process")
int BPF_PROG(bpf_kill_exit) { leave(BPF_OOM_KILL_PROCESS); return 0; }

/*
 * The victim is the task out_of_memory() sends SIGKILL to.  mark_victim fires only after
 * that signal (__oom_kill_process), so on another CPU the victim can exit before it is
 * marked: taking its pid from mark_victim left such an exit unstamped.  The signal is
 * generated under the victim's siglock, which it takes again to die, so an exit always
 * sees the pid set here (and its exit may come before its mark, never before the signal).
 * User space may set victim_pid first (OomTiming.watch): to time
 * the exit of a task killed from user space.
 */
SEC("tp_btf/signal_generate")
int BPF_PROG(signalled, int sig, void *info, struct task_struct *task, int group, int result)
{
	if (sig == SIGKILL && result == TRACE_SIGNAL_DELIVERED && started[OUT_OF_MEMORY] &&
	    !victim_signalled_at) {
		victim_signalled_at = bpf_ktime_get_ns();
		if (!victim_pid)
			victim_pid = BPF_CORE_READ(task, pid);
	}
	return 0;
}

SEC("tp_btf/mark_victim")
int BPF_PROG(victim_marked, struct task_struct *task)
{
	if (!victim_marked_at) {
		marked_pid = BPF_CORE_READ(task, pid);
		victim_marked_at = bpf_ktime_get_ns();
	}
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(task_exited, struct task_struct *task)
{
	if (victim_pid && !victim_exited_at && BPF_CORE_READ(task, pid) == victim_pid)
		victim_exited_at = bpf_ktime_get_ns();
	return 0;
}
