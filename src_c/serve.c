/* "cplrun-runner serve": the fork server.
 *
 * Started once per distinct recipe environment by Python, with that
 * environment, so that libgomp and CPL read OMP_* and CPL_* exactly as a
 * recipe started from a shell would.  It stays single-threaded and never
 * runs recipe code itself (only the libraries' registration functions), so
 * forking it is safe and a forked run starts with everything loaded.
 *
 * Requests arrive on stdin (see request.h):
 *   op=run  id= plugin= recipe= workdir= loglevel= memory_dump=
 *           param=NAME=VALUE...  frame=TAG=PATH...
 *   op=kill id= signal=
 * Replies are JSON lines on the original stdout:
 *   {"event":"ready","pid":P,"cpl_version":V,"gdb":G,"max_request":N}
 *        (N: CPLRUN_MAX_REQUEST, the longest request payload it reads)
 *   {"event":"started","id":I,"pid":P}
 *   {"event":"failed","id":I,"message":M}      (the run could not start)
 *   {"event":"finished","id":I,"pid":P,"report":R}
 *        (the run reached its end; R is its result line, see execute.c)
 *   {"event":"exited","id":I,"exit_code":C|null,"signal":S|null,
 *    "utime":U,"stime":S,"maxrss_kb":K}
 *        (the run's process ended without reporting a result)
 * End of stdin (Python exited or died) kills every run and ends the server.
 */
#define _GNU_SOURCE     /* pipe2 */
#include "runner.h"
#include "fdio.h"
#include "json_out.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>


#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23      /* Linux 5.14; older headers lack it */
#endif

typedef struct {
    long long id;
    pid_t pid;
    int report_fd;      /* read end of its report pipe; -1 once closed */
    char *report;       /* what arrived of the report so far */
    size_t report_len;
    int report_damaged; /* longer than a run writes one */
} running_run;

/* The process forked ahead for the next run. */
typedef struct {
    pid_t pid;                  /* 0 when there is none */
    int request_fd;             /* write end: its request goes here */
    int report_fd;              /* read end of its report pipe */
    unsigned long plugins;      /* plugin_cache_generation() at its fork */
} spare_process;

static running_run *runs = NULL;
static int run_count = 0;
static int run_capacity = 0;
static spare_process spare = { 0, -1, -1, 0 };
static int sigchld_pipe[2] = { -1, -1 };
static FILE *replies = NULL;
static const char *gdb = NULL;
static pid_t server = 0;

static void on_sigchld(int sig)
{
    (void)sig;
    int saved = errno;
    ssize_t ignored = write(sigchld_pipe[1], "x", 1);
    (void)ignored;
    errno = saved;
}

static void reply_end(json_writer *w)
{
    json_end_object(w);
    fputc('\n', replies);
    fflush(replies);
}

static void reply_begin(json_writer *w, const char *event, long long id)
{
    json_init(w, replies);
    json_begin_object(w);
    json_key(w, "event");
    json_string(w, event);
    json_key(w, "id");
    json_int(w, id);
}

static void reply_failed(long long id, const char *message)
{
    json_writer w;
    reply_begin(&w, "failed", id);
    json_key(&w, "message");
    json_string(&w, message);
    reply_end(&w);
}

/* gdb from CPLRUN_GDB (empty: none) or else from PATH. */
static char *find_gdb(void)
{
    const char *given = getenv("CPLRUN_GDB");
    if (given != NULL) {
        return given[0] != '\0' && access(given, X_OK) == 0 ? strdup(given)
                                                            : NULL;
    }
    const char *path = getenv("PATH");
    if (path == NULL) {
        return NULL;
    }
    char *dirs = strdup(path);
    char *found = NULL;
    for (char *dir = strtok(dirs, ":"); dir != NULL && found == NULL;
         dir = strtok(NULL, ":")) {
        char candidate[4096];
        snprintf(candidate, sizeof candidate, "%s/gdb", dir);
        if (access(candidate, X_OK) == 0) {
            found = strdup(candidate);
        }
    }
    free(dirs);
    return found;
}

static long long parse_id(const request *req)
{
    const char *id = request_get(req, "id");
    return id != NULL ? strtoll(id, NULL, 10) : -1;
}

/* The spare's request: one netstring on fd, read to its end (EOF before
 * that: the server discarded this spare). */
static int read_request(int fd, char **buf, request *req)
{
    size_t capacity = 1 << 16, filled = 0;
    *buf = malloc(capacity);
    for (;;) {
        const char *payload;
        size_t payload_len, used;
        int r = netstring_take(*buf, filled, &payload, &payload_len, &used);
        if (r < 0) {
            return -1;
        }
        if (r > 0) {
            return request_parse(payload, payload_len, req);
        }
        if (filled == capacity) {
            capacity *= 2;
            *buf = realloc(*buf, capacity);
        }
        ssize_t n = read(fd, *buf + filled, capacity - filled);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return -1;
        }
        filled += (size_t)n;
    }
}

/* Libraries' data and bss larger than this are not prefaulted: a big
 * static array would cost every spare that much memory. */
#define PREFAULT_MAX_MAPPING (2u << 20)

/* Prefaulted a piece at a time, so that a request that comes meanwhile
 * is not kept waiting for the rest. */
#define PREFAULT_STEP (256u << 10)

static int request_waiting(int request_fd)
{
    struct pollfd fd = { request_fd, POLLIN, 0 };
    return poll(&fd, 1, 0) > 0;
}

/* Makes the small private writable mappings (the libraries' data and
 * bss, the heap) the spare's own now, while it waits: a recipe that
 * writes them would otherwise take one page fault at a time while it
 * runs (about 300 for a trivial one).  Stops when the request comes.
 * Without MADV_POPULATE_WRITE (Linux before 5.14) this does nothing. */
static void prefault_writable_data(int request_fd)
{
    FILE *maps = fopen("/proc/self/maps", "r");
    if (maps == NULL) {
        return;
    }
    char line[4096];
    int stop = 0;
    while (!stop && fgets(line, sizeof line, maps) != NULL) {
        unsigned long start, end;
        char perms[5];
        if (sscanf(line, "%lx-%lx %4s", &start, &end, perms) != 3
            || strcmp(perms, "rw-p") != 0 || end - start > PREFAULT_MAX_MAPPING
            || strstr(line, "[stack]") != NULL) {
            continue;
        }
        for (unsigned long at = start; at < end && !stop; at += PREFAULT_STEP) {
            unsigned long len = end - at < PREFAULT_STEP ? end - at : PREFAULT_STEP;
            madvise((void *)at, len, MADV_POPULATE_WRITE);
            stop = request_waiting(request_fd);
        }
    }
    fclose(maps);
}

/* In the spare, right after the fork: everything a run needs that does
 * not depend on its request, then the wait for it. */
static void become_spare(int request_fd, int report_fd)
{
    /* Its own process group, so that a timeout or cancel also kills
     * whatever the recipe started itself. */
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() != server) {
        _exit(121);
    }
    /* What the recipe starts and leaves (a daemon that escapes the group)
     * becomes a child of the run while the run lives, and the server's
     * when it ends, to be killed then: see kill_orphans(). */
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    signal(SIGCHLD, SIG_DFL);
    close(sigchld_pipe[0]);
    close(sigchld_pipe[1]);
    fclose(replies);
    for (int i = 0; i < run_count; i++) {
        if (runs[i].report_fd >= 0) {
            close(runs[i].report_fd);
        }
    }
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) {
        dup2(devnull, STDIN_FILENO);
        close(devnull);
    }
    /* glibc reports heap corruption on the terminal unless told not to;
     * it belongs in the run's output. */
    setenv("LIBC_FATAL_STDERR_", "1", 1);
    /* Named for ps and top: a waiting spare, then the recipe it runs. */
    prctl(PR_SET_NAME, CPLRUN_SPARE_NAME, 0, 0, 0);
    prefault_writable_data(request_fd);
    char *buf;
    request req;
    if (read_request(request_fd, &buf, &req) != 0) {
        _exit(0);
    }
    close(request_fd);
    const char *recipe = request_get(&req, "recipe");
    if (recipe != NULL) {
        prctl(PR_SET_NAME, recipe, 0, 0, 0);
    }
    execute_run(&req, report_fd, gdb);
}

static void discard_spare(void)
{
    if (spare.pid == 0) {
        return;
    }
    close(spare.request_fd);
    close(spare.report_fd);
    /* Reaped, and not reported, like any child that is not a run. */
    kill(spare.pid, SIGKILL);
    spare.pid = 0;
}

static int spawn_spare(void)
{
    int request_pipe[2], report_pipe[2];
    if (pipe2(request_pipe, O_CLOEXEC) != 0) {
        return -1;
    }
    if (pipe2(report_pipe, O_CLOEXEC) != 0) {
        close(request_pipe[0]);
        close(request_pipe[1]);
        return -1;
    }
    /* Nothing buffered may be written twice: what libraries printed
     * while loading (stdout is /dev/null) would land in every run's
     * output. */
    fflush(replies);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(request_pipe[1]);
        close(report_pipe[0]);
        become_spare(request_pipe[0], report_pipe[1]);
    }
    close(request_pipe[0]);
    close(report_pipe[1]);
    if (pid < 0) {
        close(request_pipe[1]);
        close(report_pipe[0]);
        return -1;
    }
    /* Also from this side: the run may be killed before it gets there. */
    setpgid(pid, pid);
    fcntl(report_pipe[0], F_SETFL, O_NONBLOCK);
    spare.pid = pid;
    spare.request_fd = request_pipe[1];
    spare.report_fd = report_pipe[0];
    spare.plugins = plugin_cache_generation();
    return 0;
}

/* Hands the request to the spare, which becomes the run; a spare that
 * died meanwhile is replaced once. */
static pid_t dispatch(const char *message, size_t len, int *report_fd)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        if (spare.pid != 0 && spare.plugins != plugin_cache_generation()) {
            discard_spare();
        }
        if (spare.pid == 0 && spawn_spare() != 0) {
            return -1;
        }
        if (fd_write_all(spare.request_fd, message, len) == 0) {
            pid_t pid = spare.pid;
            close(spare.request_fd);
            *report_fd = spare.report_fd;
            spare.pid = 0;
            return pid;
        }
        discard_spare();
    }
    errno = EPIPE;
    return -1;
}

static void start_run(const request *req, const char *message, size_t len)
{
    long long id = parse_id(req);
    const char *plugin = request_get(req, "plugin");
    char err[4096];
    if (plugin == NULL || request_get(req, "workdir") == NULL) {
        reply_failed(id, "request without plugin or workdir");
        return;
    }
    if (plugin_cache_get(plugin, err, sizeof err) == NULL) {
        reply_failed(id, err);
        return;
    }
    int report_fd;
    pid_t pid = dispatch(message, len, &report_fd);
    if (pid < 0) {
        snprintf(err, sizeof err, "fork failed: %s", strerror(errno));
        reply_failed(id, err);
        return;
    }
    if (run_count == run_capacity) {
        run_capacity = run_capacity ? 2 * run_capacity : 16;
        runs = realloc(runs, (size_t)run_capacity * sizeof *runs);
    }
    runs[run_count] = (running_run){ id, pid, report_fd, NULL, 0, 0 };
    run_count++;
    json_writer w;
    reply_begin(&w, "started", id);
    json_key(&w, "pid");
    json_int(&w, pid);
    reply_end(&w);
    /* Runs side by side: the next request may come any moment, so its
     * process is forked now.  A run alone: the next request comes after
     * its end, and the fork then (in reply_*) does not compete with it. */
    if (run_count > 1) {
        spawn_spare();
    }
}

static void kill_run(const request *req)
{
    long long id = parse_id(req);
    const char *sig = request_get(req, "signal");
    int signum = sig != NULL ? atoi(sig) : SIGKILL;
    for (int i = 0; i < run_count; i++) {
        if (runs[i].id == id) {
            killpg(runs[i].pid, signum);
        }
    }
}

static int is_run(pid_t pid)
{
    for (int i = 0; i < run_count; i++) {
        if (runs[i].pid == pid) {
            return 1;
        }
    }
    return 0;
}

static void kill_if_orphan(long pid)
{
    if (pid > 0 && pid != spare.pid && !is_run((pid_t)pid)) {
        kill((pid_t)pid, SIGKILL);
    }
}

/* Kills the server's children that are not runs: what a finished run
 * left behind outside its process group (a daemon that called setsid()).
 * Each run is a subreaper itself, so while it lives its orphans become its
 * children; they only become ours once it has ended.  Their own children
 * come to us in turn when they die, and go the same way. */
static void kill_orphans(void)
{
    char path[64];
    pid_t self = getpid();
    long pid;
    snprintf(path, sizeof path, "/proc/self/task/%ld/children", (long)self);
    FILE *f = fopen(path, "r");
    if (f != NULL) {
        while (fscanf(f, "%ld", &pid) == 1) {
            kill_if_orphan(pid);
        }
        fclose(f);
        return;
    }
    /* A kernel without that file: every process's parent, from its stat. */
    DIR *proc = opendir("/proc");
    if (proc == NULL) {
        return;
    }
    struct dirent *entry;
    while ((entry = readdir(proc)) != NULL) {
        char *end;
        pid = strtol(entry->d_name, &end, 10);
        if (*end != '\0' || pid <= 0) {
            continue;
        }
        char stat_path[64], text[512];
        snprintf(stat_path, sizeof stat_path, "/proc/%ld/stat", pid);
        int fd = open(stat_path, O_RDONLY);
        if (fd < 0) {
            continue;
        }
        ssize_t n = read(fd, text, sizeof text - 1);
        close(fd);
        if (n <= 0) {
            continue;
        }
        text[n] = '\0';
        /* "pid (comm) state ppid ...": comm may hold spaces and ')' */
        char *close_paren = strrchr(text, ')');
        char state;
        long ppid;
        if (close_paren != NULL
            && sscanf(close_paren + 1, " %c %ld", &state, &ppid) == 2
            && ppid == (long)self) {
            kill_if_orphan(pid);
        }
    }
    closedir(proc);
}

/* Reads what has arrived of run r's report; 1 once the whole of it (up
 * to its newline) is there.  Closes the pipe at its end. */
static int read_report(running_run *r)
{
    char chunk[1 << 16];
    while (r->report_fd >= 0) {
        ssize_t n = read(r->report_fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            if (n == 0 || errno != EAGAIN) {
                close(r->report_fd);
                r->report_fd = -1;
            }
            break;
        }
        if (r->report_damaged) {
            continue;
        }
        /* Longer than the run's own code writes: not a report. */
        if (r->report_len + (size_t)n > CPLRUN_MAX_REPORT + 1) {
            r->report_damaged = 1;
            continue;
        }
        r->report = realloc(r->report, r->report_len + (size_t)n + 1);
        memcpy(r->report + r->report_len, chunk, (size_t)n);
        char *newline = memchr(r->report + r->report_len, '\n', (size_t)n);
        r->report_len += (size_t)n;
        r->report[r->report_len] = '\0';
        if (newline != NULL) {
            *newline = '\0';
            return 1;
        }
    }
    return 0;
}

static void forget_run(int i)
{
    if (runs[i].report_fd >= 0) {
        close(runs[i].report_fd);
    }
    free(runs[i].report);
    runs[i] = runs[--run_count];
}

/* Run i reported its result: that is its end. */
static void reply_finished(int i)
{
    /* What the recipe left running in its group goes with it (the run's
     * process too, which has nothing left to do but exit). */
    killpg(runs[i].pid, SIGKILL);
    json_writer w;
    reply_begin(&w, "finished", runs[i].id);
    json_key(&w, "pid");
    json_int(&w, runs[i].pid);
    json_key(&w, "report");
    json_string(&w, runs[i].report);
    reply_end(&w);
    forget_run(i);
    if (spare.pid == 0) {
        spawn_spare();
    }
}

static void reply_exited(int i, int status, const struct rusage *usage)
{
    json_writer w;
    reply_begin(&w, "exited", runs[i].id);
    json_key(&w, "pid");
    json_int(&w, runs[i].pid);
    json_key(&w, "exit_code");
    if (WIFEXITED(status)) {
        json_int(&w, WEXITSTATUS(status));
    } else {
        json_null(&w);
    }
    json_key(&w, "signal");
    if (WIFSIGNALED(status)) {
        json_int(&w, WTERMSIG(status));
    } else {
        json_null(&w);
    }
    json_key(&w, "utime");
    json_double(&w, usage->ru_utime.tv_sec + usage->ru_utime.tv_usec * 1e-6);
    json_key(&w, "stime");
    json_double(&w, usage->ru_stime.tv_sec + usage->ru_stime.tv_usec * 1e-6);
    json_key(&w, "maxrss_kb");
    json_int(&w, usage->ru_maxrss);
    reply_end(&w);
    forget_run(i);
    if (spare.pid == 0) {
        spawn_spare();
    }
}

static void reap_children(void)
{
    int status;
    struct rusage usage;
    pid_t pid;
    int reaped = 0;
    while ((pid = wait4(-1, &status, WNOHANG, &usage)) > 0) {
        reaped = 1;
        /* What the recipe left running in its group goes with it. */
        killpg(pid, SIGKILL);
        if (pid == spare.pid) {
            /* Killed from outside while it waited: replaced when needed. */
            close(spare.request_fd);
            close(spare.report_fd);
            spare.pid = 0;
            continue;
        }
        for (int i = 0; i < run_count; i++) {
            if (runs[i].pid != pid) {
                continue;
            }
            /* A report may still wait in the pipe: the end of the process
             * and that of its report arrive in either order. */
            if (read_report(&runs[i])) {
                reply_finished(i);
            } else {
                reply_exited(i, status, &usage);
            }
            break;
        }
    }
    if (reaped) {
        kill_orphans();
    }
}

static void read_reports(const struct pollfd *fds, int count)
{
    for (int k = 0; k < count; k++) {
        if (fds[k].revents == 0) {
            continue;
        }
        for (int i = 0; i < run_count; i++) {
            if (runs[i].report_fd == fds[k].fd) {
                if (read_report(&runs[i])) {
                    reply_finished(i);
                }
                break;
            }
        }
    }
}

static void handle_request(const char *message, size_t message_len,
                           const char *payload, size_t len)
{
    request req;
    if (request_parse(payload, len, &req) != 0) {
        reply_failed(-1, "malformed request");
        return;
    }
    const char *op = request_get(&req, "op");
    if (op != NULL && strcmp(op, "run") == 0) {
        start_run(&req, message, message_len);
    } else if (op != NULL && strcmp(op, "kill") == 0) {
        kill_run(&req);
    } else {
        reply_failed(parse_id(&req), "unknown request");
    }
    request_free(&req);
}

static void shut_down(void)
{
    /* Every run with its group, and whatever else is still our child,
     * until there is nothing left to wait for. */
    for (;;) {
        for (int i = 0; i < run_count; i++) {
            killpg(runs[i].pid, SIGKILL);
        }
        while (run_count > 0) {
            forget_run(0);
        }
        discard_spare();
        kill_orphans();
        int status;
        pid_t pid = waitpid(-1, &status, 0);
        if (pid < 0 && errno != EINTR) {
            break;
        }
        if (pid > 0) {
            killpg(pid, SIGKILL);
        }
    }
}

int serve_main(void)
{
    int reply_fd = protect_stdout();
    replies = reply_fd >= 0 ? fdopen(reply_fd, "w") : NULL;
    if (replies == NULL || pipe(sigchld_pipe) != 0) {
        perror("cplrun-runner serve");
        return 2;
    }
    for (int i = 0; i < 2; i++) {
        fcntl(sigchld_pipe[i], F_SETFL, O_NONBLOCK);
        fcntl(sigchld_pipe[i], F_SETFD, FD_CLOEXEC);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigchld;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* Processes a recipe leaves behind become our children, so that the
     * group kill after each run is followed by their reaping here. */
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    gdb = find_gdb();
    if (gdb == NULL) {
        crash_backtrace_preload();
    }
    server = getpid();
    json_writer w;
    reply_begin(&w, "ready", 0);
    json_key(&w, "pid");
    json_int(&w, server);
    json_key(&w, "cpl_version");
    json_string(&w, cpl_version_get_version());
    json_key(&w, "gdb");
    json_string(&w, gdb);
    json_key(&w, "max_request");
    json_int(&w, CPLRUN_MAX_REQUEST);
    reply_end(&w);

    spawn_spare();

    size_t capacity = 1 << 16;
    size_t filled = 0;
    char *buf = malloc(capacity);
    struct pollfd *fds = NULL;
    int fds_capacity = 0;
    for (;;) {
        if (fds_capacity < run_count + 2) {
            fds_capacity = 2 * (run_count + 2);
            fds = realloc(fds, (size_t)fds_capacity * sizeof *fds);
        }
        fds[0] = (struct pollfd){ STDIN_FILENO, POLLIN, 0 };
        fds[1] = (struct pollfd){ sigchld_pipe[0], POLLIN, 0 };
        int count = 2;
        for (int i = 0; i < run_count; i++) {
            if (runs[i].report_fd >= 0) {
                fds[count++] = (struct pollfd){ runs[i].report_fd, POLLIN, 0 };
            }
        }
        if (poll(fds, (nfds_t)count, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            break;
        }
        read_reports(fds + 2, count - 2);
        if (fds[1].revents & POLLIN) {
            char drain[64];
            while (read(sigchld_pipe[0], drain, sizeof drain) > 0) {
            }
            reap_children();
        }
        if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            if (filled == capacity) {
                if (capacity >= CPLRUN_MAX_REQUEST + 64) {
                    break;
                }
                capacity *= 2;
                buf = realloc(buf, capacity);
            }
            ssize_t n = read(STDIN_FILENO, buf + filled, capacity - filled);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                break;
            }
            filled += (size_t)n;
            size_t offset = 0;
            for (;;) {
                const char *payload;
                size_t payload_len, used;
                int r = netstring_take(buf + offset, filled - offset, &payload,
                                       &payload_len, &used);
                if (r == 0) {
                    break;
                }
                if (r < 0) {
                    /* Framing is lost; nothing after this can be trusted. */
                    reply_failed(-1, "malformed request stream");
                    shut_down();
                    return 3;
                }
                handle_request(buf + offset, used, payload, payload_len);
                offset += used;
            }
            memmove(buf, buf + offset, filled - offset);
            filled -= offset;
        }
    }
    shut_down();
    return 0;
}
