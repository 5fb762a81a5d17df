/*
 * Lower bound for starting a container: the least work that every runtime in
 * startup.sh does for one container, with nothing else.
 *
 * It unshares the pid, mount, network, IPC and UTS namespaces, forks the
 * process that becomes pid 1, makes the mount tree private, bind-mounts the
 * root filesystem onto itself, calls pivot_root(2), detaches the old root and
 * execs the program. It mounts no /proc or /dev, creates no cgroup and
 * changes no capabilities, so it does less than an OCI runtime must.
 *
 * Usage: floor ROOTFS PROGRAM [ARG...]
 * Exit status: the program's status, or 128+N if signal N killed it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void fail(const char *action, const char *arg)
{
	fprintf(stderr, "floor: %s %s failed: %s\n", action, arg, strerror(errno));
	_exit(125);
}

static void enter_rootfs_and_exec(const char *rootfs, char **argv)
{
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		fail("making / private", "");
	if (mount(rootfs, rootfs, NULL, MS_BIND | MS_REC, NULL) != 0)
		fail("bind mount of", rootfs);
	if (chdir(rootfs) != 0)
		fail("chdir to", rootfs);
	/* pivot_root(".", ".") stacks the old root on top of the new one, so a
	 * lazy unmount of "." removes it without a directory to put it in. */
	if (syscall(SYS_pivot_root, ".", ".") != 0)
		fail("pivot_root into", rootfs);
	if (umount2(".", MNT_DETACH) != 0)
		fail("detaching the old root", "");
	if (chdir("/") != 0)
		fail("chdir to", "/");

	char *envp[] = { "PATH=/bin", NULL };
	execve(argv[0], argv, envp);
	fail("execve of", argv[0]);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: floor ROOTFS PROGRAM [ARG...]\n");
		return 2;
	}

	int flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS;
	if (unshare(flags) != 0)
		fail("unshare of", "pid, mount, net, ipc and uts namespaces");

	/* The new pid namespace applies to children only, so the container's
	 * pid 1 is a forked child. */
	pid_t child = fork();
	if (child < 0)
		fail("fork", "");
	if (child == 0)
		enter_rootfs_and_exec(argv[1], argv + 2);

	int status;
	if (waitpid(child, &status, 0) < 0)
		fail("waitpid", "");
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}
