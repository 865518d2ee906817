/* System calls made on purpose, for the tests of `run --explain` (tests/sandbox/test_explain.py):
 * busybox has no applet that makes an arbitrary call with chosen arguments. Built static.
 *
 *   denials NR [ARG...]               one call; an ARG "s:TEXT" passes a pointer to TEXT, any
 *                                     other ARG is a number (0x... allowed); prints "NR=ok" or
 *                                     "NR=-1/ERRNO"
 *   denials storm NR COUNT THREADS    THREADS threads make call NR COUNT times each; prints
 *                                     "storm=CALLS/FAILED/ERRNO" (ERRNO of the last failure)
 *   denials writes PATH COUNT         opens PATH for writing (O_CREAT|O_TRUNC) and closes it, COUNT
 *                                     times; prints "writes=COUNT/FAILED/ERRNO"
 *   denials listen NR                 loads a filter that sends call NR to a listener of its own
 *                                     (SECCOMP_FILTER_FLAG_NEW_LISTENER); prints "listen=ok" or
 *                                     "listen=-1/ERRNO"
 *   denials fds                       opens /dev/null until that fails; prints "fds=OPENED/ERRNO" */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static long number(const char *text) { return strtol(text, 0, 0); }

static long one_call(long nr, int argc, char **argv) {
    long args[6] = {0};
    for (int i = 0; i < argc && i < 6; i++)
        args[i] = strncmp(argv[i], "s:", 2) == 0 ? (long)(argv[i] + 2) : number(argv[i]);
    return syscall(nr, args[0], args[1], args[2], args[3], args[4], args[5]);
}

static long storm_nr, storm_count, storm_failed, storm_errno;
static pthread_mutex_t storm_lock = PTHREAD_MUTEX_INITIALIZER;

static void *storm_thread(void *unused) {
    (void)unused;
    long failed = 0, last = 0;
    for (long i = 0; i < storm_count; i++)
        if (syscall(storm_nr, 0, 0, 0, 0, 0, 0) < 0) {
            failed++;
            last = errno;
        }
    pthread_mutex_lock(&storm_lock);
    storm_failed += failed;
    if (last)
        storm_errno = last;
    pthread_mutex_unlock(&storm_lock);
    return 0;
}

static int storm(long nr, long count, long threads) {
    pthread_t ids[64];
    storm_nr = nr, storm_count = count;
    if (threads > 64)
        threads = 64;
    for (long i = 0; i < threads; i++)
        pthread_create(&ids[i], 0, storm_thread, 0);
    for (long i = 0; i < threads; i++)
        pthread_join(ids[i], 0);
    printf("storm=%ld/%ld/%ld\n", count * threads, storm_failed, storm_errno);
    return 0;
}

static int writes(const char *path, long count) {
    long failed = 0, last = 0;
    for (long i = 0; i < count; i++) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
            failed++;
            last = errno;
        } else
            close(fd);
    }
    printf("writes=%ld/%ld/%ld\n", count, failed, last);
    return 0;
}

static int listen_for(long nr) {
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog program = {sizeof(code) / sizeof(code[0]), code};
    long fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &program);
    if (fd < 0)
        printf("listen=-1/%d\n", errno);
    else
        printf("listen=ok\n");
    return 0;
}

static int fill_descriptors(void) {
    long opened = 0;
    while (open("/dev/null", O_RDONLY) >= 0)
        opened++;
    printf("fds=%ld/%d\n", opened, errno);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "fds"))
        return fill_descriptors();
    if (argc == 3 && !strcmp(argv[1], "listen"))
        return listen_for(number(argv[2]));
    if (argc == 4 && !strcmp(argv[1], "writes"))
        return writes(argv[2], number(argv[3]));
    if (argc == 5 && !strcmp(argv[1], "storm"))
        return storm(number(argv[2]), number(argv[3]), number(argv[4]));
    if (argc < 2) {
        fprintf(stderr, "usage: denials NR [ARG...] | denials storm NR COUNT THREADS | denials writes PATH COUNT\n");
        return 2;
    }
    long result = one_call(number(argv[1]), argc - 2, argv + 2);
    if (result < 0)
        printf("%s=-1/%d\n", argv[1], errno);
    else
        printf("%s=ok\n", argv[1]);
    return 0;
}
