/* What a run leaves behind when the recipe crashes: the signal and, with
 * gdb, a backtrace of the crashing process. */
#include "runner.h"

#include <execinfo.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* gdb gets this long to attach and print before it is killed. */
#define GDB_SECONDS 30

static const char *crash_gdb = NULL;
static const int crash_signals[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT };

static void write_str(int fd, const char *s)
{
    ssize_t ignored = write(fd, s, strlen(s));
    (void)ignored;
}

/* Only async-signal-safe calls below, up to the backtrace() fallback:
 * hence decimal formatting by hand.  Returns the start of the digits. */
static char *format_decimal(char *buf, size_t size, long value)
{
    char *p = buf + size - 1;
    *p = '\0';
    unsigned long v = value < 0 ? -(unsigned long)value : (unsigned long)value;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0 && p > buf + 1);
    if (value < 0) {
        *--p = '-';
    }
    return p;
}

static void run_gdb(int fd)
{
    char buf[32];
    const char *volatile pid = format_decimal(buf, sizeof buf,
                                              (long)getpid());

    /* vfork, not fork: fork() runs glibc's atfork handlers, which take
     * the malloc locks; a crash inside malloc or free (heap corruption
     * found with threads running) holds one already, and fork() would
     * wait for it forever.  The child only execs. */
    pid_t child = vfork();
    if (child == 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        int devnull = open("/dev/null", O_RDONLY);
        dup2(devnull, STDIN_FILENO);
        execl(crash_gdb, "gdb", "-batch", "-nx", "-q", "-p", pid,
              "-ex", "set confirm off", "-ex", "bt", (char *)NULL);
        _exit(127);
    }
    if (child < 0) {
        return;
    }
    struct timespec tick = { 0, 50 * 1000 * 1000 };
    for (int waited = 0; waited < GDB_SECONDS * 20; waited++) {
        if (waitpid(child, NULL, WNOHANG) == child) {
            return;
        }
        nanosleep(&tick, NULL);
    }
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
}

static void on_crash(int sig)
{
    int fd = open(CPLRUN_BACKTRACE_FILE, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0) {
        char buf[32];
        write_str(fd, "signal ");
        write_str(fd, format_decimal(buf, sizeof buf, sig));
        write_str(fd, "\n");
        if (crash_gdb != NULL) {
            run_gdb(fd);
        } else {
            void *frames[64];
            int n = backtrace(frames, 64);
            backtrace_symbols_fd(frames, n, fd);
        }
        close(fd);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

void crash_backtrace_preload(void)
{
    void *frame[1];
    backtrace(frame, 1);
}

void crash_handlers_install(const char *gdb)
{
    crash_gdb = gdb;
    if (gdb != NULL) {
        /* Lets gdb attach although it is not our ancestor (Yama). */
        prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
    } else {
        crash_backtrace_preload();
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_crash;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND | SA_NODEFER;
    for (size_t i = 0; i < sizeof crash_signals / sizeof crash_signals[0]; i++) {
        sigaction(crash_signals[i], &sa, NULL);
    }
}
