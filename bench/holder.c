/*
 * holder: processes that hold memory inside cgroups, for bench/decision_cost.py.
 *
 *   holder hold KIB CGROUP...   one child per CGROUP joins it and touches KIB KiB
 *                               of anonymous memory; prints "ready" once all did,
 *                               kills them all when its stdin closes
 *   holder grow CGROUP MIB      joins CGROUP and touches MIB MiB (until the OOM
 *                               killer ends it); if it got them all, prints
 *                               "done <CLOCK_MONOTONIC ns>" and exits 0
 *   holder press CGROUP MIB     joins CGROUP, touches MIB MiB, prints "over <ns>"
 *                               (the bench sets memory.high below MIB), then keeps
 *                               touching 1 MiB more at a time until it is killed
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Killable like any task: a parent's -1000 (a test runner's) is not inherited. */
static void killable(void)
{
	FILE *adj = fopen("/proc/self/oom_score_adj", "w");

	if (!adj || fprintf(adj, "0\n") < 0 || fclose(adj) != 0) {
		perror("oom_score_adj");
		_exit(2);
	}
}

static void join(const char *cgroup)
{
	char path[4096];
	FILE *procs;

	killable();

	snprintf(path, sizeof(path), "%s/cgroup.procs", cgroup);
	procs = fopen(path, "w");
	if (!procs || fprintf(procs, "%d\n", getpid()) < 0 || fclose(procs) != 0) {
		perror(path);
		_exit(2);
	}
}

static void touch(size_t bytes)
{
	char *memory = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (memory == MAP_FAILED) {
		perror("mmap");
		_exit(3);
	}
	for (size_t at = 0; at < bytes; at += 4096)
		memory[at] = 1;
}

static long long monotonic_ns(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "grow") == 0) {
		join(argv[2]);
		touch((size_t)atol(argv[3]) << 20);
		printf("done %lld\n", monotonic_ns());
		return 0;
	}
	if (argc == 4 && strcmp(argv[1], "press") == 0) {
		join(argv[2]);
		touch((size_t)atol(argv[3]) << 20);
		printf("over %lld\n", monotonic_ns());
		fflush(stdout);
		for (int mib = 0; mib < 4096; mib++)  /* throttled above memory.high: slow */
			touch(1 << 20);
		pause();
		return 0;
	}
	if (argc < 4 || strcmp(argv[1], "hold") != 0) {
		fprintf(stderr, "usage: holder hold KIB CGROUP... | holder grow|press CGROUP MIB\n");
		return 2;
	}
	size_t bytes = (size_t)atol(argv[2]) << 10;
	int count = argc - 3, ready[2];
	pid_t *children = calloc(count, sizeof(*children));
	char byte;

	if (!children || pipe(ready) != 0)
		return 1;
	for (int i = 0; i < count; i++) {
		children[i] = fork();
		if (children[i] < 0) {
			perror("fork");
			count = i;
			break;
		}
		if (children[i] == 0) {
			close(ready[0]);
			join(argv[3 + i]);
			touch(bytes);
			if (write(ready[1], "r", 1) != 1)
				_exit(4);
			close(ready[1]);
			pause();
			_exit(0);
		}
	}
	close(ready[1]);
	for (int i = 0; i < count; i++)
		if (read(ready[0], &byte, 1) != 1)
			break;
	printf("ready %d\n", count);
	fflush(stdout);
	while (read(0, &byte, 1) > 0)
		;
	for (int i = 0; i < count; i++)
		kill(children[i], SIGKILL);
	while (wait(NULL) > 0)
		;
	return 0;
}
