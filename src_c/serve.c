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
 *   {"event":"ready","pid":P,"cpl_version":V}
 *   {"event":"started","id":I,"pid":P}
 *   {"event":"failed","id":I,"message":M}      (the run could not start)
 *   {"event":"exited","id":I,"exit_code":C|null,"signal":S|null,
 *    "utime":U,"stime":S,"maxrss_kb":K}
 * End of stdin (Python exited or died) kills every run and ends the server.
 */
#include "runner.h"
#include "json_out.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    long long id;
    pid_t pid;
} running_run;

static running_run *runs = NULL;
static int run_count = 0;
static int run_capacity = 0;
static int sigchld_pipe[2] = { -1, -1 };
static FILE *replies = NULL;

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

static void start_run(const request *req, const char *gdb, pid_t server)
{
    long long id = parse_id(req);
    const char *plugin = request_get(req, "plugin");
    char err[4096];
    if (plugin == NULL || request_get(req, "workdir") == NULL) {
        reply_failed(id, "request without plugin or workdir");
        return;
    }
    loaded_plugin *lib = plugin_cache_get(plugin, err, sizeof err);
    if (lib == NULL) {
        reply_failed(id, err);
        return;
    }
    fflush(replies);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, sizeof err, "fork failed: %s", strerror(errno));
        reply_failed(id, err);
        return;
    }
    if (pid == 0) {
        /* Its own process group, so that a timeout or cancel also kills
         * whatever the recipe started itself. */
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        if (getppid() != server) {
            _exit(121);
        }
        /* What the recipe starts and leaves (a daemon that escapes the
         * group) becomes a child of the run while the run lives, and ours
         * when it ends, to be killed then: see kill_orphans(). */
        prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        signal(SIGCHLD, SIG_DFL);
        close(sigchld_pipe[0]);
        close(sigchld_pipe[1]);
        fclose(replies);
        execute_run(req, lib, gdb);
    }
    /* Also from this side: the run may be killed before it gets there. */
    setpgid(pid, pid);
    if (run_count == run_capacity) {
        run_capacity = run_capacity ? 2 * run_capacity : 16;
        runs = realloc(runs, (size_t)run_capacity * sizeof *runs);
    }
    runs[run_count].id = id;
    runs[run_count].pid = pid;
    run_count++;
    json_writer w;
    reply_begin(&w, "started", id);
    json_key(&w, "pid");
    json_int(&w, pid);
    reply_end(&w);
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
    if (pid > 0 && !is_run((pid_t)pid)) {
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
        for (int i = 0; i < run_count; i++) {
            if (runs[i].pid != pid) {
                continue;
            }
            json_writer w;
            reply_begin(&w, "exited", runs[i].id);
            json_key(&w, "pid");
            json_int(&w, pid);
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
            json_double(&w, usage.ru_utime.tv_sec + usage.ru_utime.tv_usec * 1e-6);
            json_key(&w, "stime");
            json_double(&w, usage.ru_stime.tv_sec + usage.ru_stime.tv_usec * 1e-6);
            json_key(&w, "maxrss_kb");
            json_int(&w, usage.ru_maxrss);
            reply_end(&w);
            runs[i] = runs[--run_count];
            break;
        }
    }
    if (reaped) {
        kill_orphans();
    }
}

static void handle_request(const char *payload, size_t len, const char *gdb,
                           pid_t server)
{
    request req;
    if (request_parse(payload, len, &req) != 0) {
        reply_failed(-1, "malformed request");
        return;
    }
    const char *op = request_get(&req, "op");
    if (op != NULL && strcmp(op, "run") == 0) {
        start_run(&req, gdb, server);
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
        run_count = 0;
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
    char *gdb = find_gdb();
    pid_t server = getpid();
    json_writer w;
    reply_begin(&w, "ready", 0);
    json_key(&w, "pid");
    json_int(&w, server);
    json_key(&w, "cpl_version");
    json_string(&w, cpl_version_get_version());
    json_key(&w, "gdb");
    json_string(&w, gdb);
    reply_end(&w);

    size_t capacity = 1 << 16;
    size_t filled = 0;
    char *buf = malloc(capacity);
    for (;;) {
        struct pollfd fds[2] = {
            { STDIN_FILENO, POLLIN, 0 },
            { sigchld_pipe[0], POLLIN, 0 },
        };
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            break;
        }
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
                handle_request(payload, payload_len, gdb, server);
                offset += used;
            }
            memmove(buf, buf + offset, filled - offset);
            filled -= offset;
        }
    }
    shut_down();
    return 0;
}
