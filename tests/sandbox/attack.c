/* Attacks a container tries from inside, one per subcommand; busybox has no applet for
 * these system calls. Built static by the tests (tests/sandbox/harness.py) and put into a
 * test image. Every attempt prints one line, "NAME=ok" or "NAME=-1/ERRNO", so a test can
 * tell a refusal from a success without parsing messages. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int report(const char *name, long result) {
    if (result < 0)
        printf("%s=-1/%d\n", name, errno);
    else
        printf("%s=ok\n", name);
    fflush(stdout);
    return result < 0;
}

/* TIOCSTI: push TEXT into the input queue of the terminal on fd 0, as if typed. */
static int inject(const char *text) {
    long result = 0;
    for (const char *c = text; *c && result == 0; c++)
        result = ioctl(0, TIOCSTI, c);
    report("tiocsti", result);
    /* TIOCLINUX subcode 3 pastes the console selection as input (virtual consoles). */
    char paste = 3;
    report("tioclinux", ioctl(0, TIOCLINUX, &paste));
    return 0;
}

/* Every descriptor this process holds (but the one reading the folder), and where each
 * points, then the working directory: what runc CVE-2024-21626 leaked. */
static int descriptors(void) {
    DIR *folder = opendir("/proc/self/fd");
    if (folder == NULL)
        return report("opendir", -1);
    struct dirent *entry;
    while ((entry = readdir(folder)) != NULL) {
        if (entry->d_name[0] == '.' || atoi(entry->d_name) == dirfd(folder))
            continue;
        char path[300], target[4096] = "";
        snprintf(path, sizeof path, "/proc/self/fd/%s", entry->d_name);
        ssize_t n = readlink(path, target, sizeof target - 1);
        target[n > 0 ? n : 0] = 0;
        struct stat info;
        int is_dir = fstat(atoi(entry->d_name), &info) == 0 && S_ISDIR(info.st_mode);
        printf("fd %s %s %s\n", entry->d_name, is_dir ? "dir" : "other", target);
    }
    closedir(folder);
    char cwd[4096] = "", link[4096] = "";
    ssize_t n = readlink("/proc/self/cwd", link, sizeof link - 1);
    link[n > 0 ? n : 0] = 0;
    printf("cwd %s %s\n", getcwd(cwd, sizeof cwd) ? cwd : "?", link);
    return 0;
}

/* runc CVE-2019-5736: reach a runtime process's binary through /proc/PID/exe, directly or by
 * reopening an O_PATH descriptor for writing, and read its other /proc entries. */
static int runtime_binary(const char *pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%s/exe", pid);
    report("exe-write", open(path, O_WRONLY));
    report("exe-read", open(path, O_RDONLY));
    int handle = open(path, O_PATH);
    report("exe-path", handle);
    if (handle >= 0) {
        char again[64];
        snprintf(again, sizeof again, "/proc/self/fd/%d", handle);
        report("exe-reopen-write", open(again, O_WRONLY));
    }
    const char *entries[] = {"environ", "mem", "fd", "cwd", "root", "maps", "map_files"};
    for (size_t i = 0; i < sizeof entries / sizeof *entries; i++) {
        char name[64];
        snprintf(path, sizeof path, "/proc/%s/%s", pid, entries[i]);
        snprintf(name, sizeof name, "%s-open", entries[i]);
        report(name, open(path, O_RDONLY));
    }
    return 0;
}

/* Allocate and touch memory in 1 MiB steps until refused; print the running total. */
static int memory_hog(void) {
    for (long mib = 1;; mib++) {
        char *block = malloc(1 << 20);
        if (block == NULL) {
            printf("hog stopped at %ld MiB\n", mib - 1);
            return 0;
        }
        memset(block, 1, 1 << 20);
        printf("hog %ld MiB\n", mib);
        fflush(stdout);
    }
}

/* Open descriptors until refused. */
static int descriptor_flood(void) {
    long opened = 0;
    while (open("/dev/null", O_RDONLY) >= 0)
        opened++;
    printf("flood stopped after %ld with errno %d\n", opened, errno);
    return 0;
}

static int keyrings(void) {
    report("keyctl", syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session */, 0, 0, 0));
    report("add_key", syscall(SYS_add_key, "user", "pysandbox-test", "x", 1, -3));
    return 0;
}

static int trace(const char *pid) {
    return report("ptrace", ptrace(PTRACE_ATTACH, atoi(pid), 0, 0));
}

/* What a runtime does at start (Node's code range, Java's heap): reserve address space it
 * does not touch yet, PROT_NONE. A memory limit must not refuse that, only memory in use. */
static int reserve(const char *mib) {
    size_t size = (size_t)strtoul(mib, NULL, 10) << 20;
    void *area = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return report("reserve", area == MAP_FAILED ? -1 : 0);
}

/* runc CVE-2019-5736 and CVE-2016-9962 against `exec`: for SECONDS, watch every process
 * that appears in the pid namespace; print "caught PID TARGET" whenever one's /proc/PID/exe
 * can be read and leads to the host's interpreter (the exec'd process before its execve),
 * and "attached PID" whenever one can be ptraced. Then "watched N" (processes seen). */
static int watch(const char *seconds) {
    time_t end = time(NULL) + atoi(seconds);
    long seen = 0;
    pid_t self = getpid(), last = 1;
    while (time(NULL) < end) {
        DIR *proc = opendir("/proc");
        struct dirent *entry;
        while (proc != NULL && (entry = readdir(proc)) != NULL) {
            pid_t pid = atoi(entry->d_name);
            if (pid <= 1 || pid == self)
                continue;
            if (pid > last) {
                seen++;
                last = pid;
            }
            char path[64], target[4096] = "";
            snprintf(path, sizeof path, "/proc/%d/exe", pid);
            ssize_t n = readlink(path, target, sizeof target - 1);
            target[n > 0 ? n : 0] = 0;
            if (n > 0 && strstr(target, "python") != NULL) {
                printf("caught %d %s\n", pid, target);
                fflush(stdout);
            }
            if (n > 0 && strstr(target, "python") != NULL && ptrace(PTRACE_ATTACH, pid, 0, 0) == 0) {
                printf("attached %d\n", pid);
                fflush(stdout);
                waitpid(pid, NULL, __WALL); /* the attach stop, then let it go on */
                ptrace(PTRACE_DETACH, pid, 0, 0);
            }
        }
        if (proc != NULL)
            closedir(proc);
    }
    printf("watched %ld\n", seen);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "";
    if (!strcmp(what, "inject") && argc > 2)
        return inject(argv[2]);
    if (!strcmp(what, "fds"))
        return descriptors();
    if (!strcmp(what, "exe") && argc > 2)
        return runtime_binary(argv[2]);
    if (!strcmp(what, "hog"))
        return memory_hog();
    if (!strcmp(what, "flood"))
        return descriptor_flood();
    if (!strcmp(what, "keys"))
        return keyrings();
    if (!strcmp(what, "ptrace") && argc > 2)
        return trace(argv[2]);
    if (!strcmp(what, "reserve") && argc > 2)
        return reserve(argv[2]);
    if (!strcmp(what, "watch") && argc > 2)
        return watch(argv[2]);
    fprintf(stderr, "usage: attack inject TEXT|fds|exe PID|hog|flood|keys|ptrace PID|reserve MIB|watch SECONDS\n");
    return 2;
}
