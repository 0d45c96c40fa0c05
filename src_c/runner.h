/* cplrun-runner: the program that loads CPL recipe libraries and runs
 * recipes on behalf of the Python package, so that the Python interpreter
 * itself never loads a recipe, never initialises OpenMP and is never
 * forked.
 *
 *   cplrun-runner describe FILE...   JSON description of the recipes
 *   cplrun-runner serve              fork server: reads run requests on
 *                                    stdin, answers with JSON lines
 */
#ifndef CPLRUN_RUNNER_H
#define CPLRUN_RUNNER_H

#include "plugin.h"
#include "request.h"

/* Names of the runner's own files inside a run's work folder. */
#define CPLRUN_LOG_FILE       ".cplrun-log"
#define CPLRUN_OUTPUT_FILE    ".cplrun-output"
#define CPLRUN_RESULT_FILE    ".cplrun-result.json"
#define CPLRUN_BACKTRACE_FILE ".cplrun-backtrace"

/* The process name (comm) of a server's process waiting for its run. */
#define CPLRUN_SPARE_NAME     "cplrun-spare"

int describe_main(int argc, char **argv);
int serve_main(void);

/* A run's result longer than this goes to its result file instead of
 * the report pipe: the server sends reports on as one line, which Python
 * reads up to 1 MiB (escaping at most doubles the length). */
#define CPLRUN_MAX_REPORT (256u << 10)

/* Runs the recipe described by req in the current (freshly forked)
 * process and terminates it; never returns.  The result goes to
 * report_fd as one JSON line (see execute.c); crashes are reported with
 * gdb's backtrace when gdb is not NULL. */
void execute_run(const request *req, int report_fd, const char *gdb)
    __attribute__((noreturn));

/* Installs handlers that write CPLRUN_BACKTRACE_FILE (with gdb when gdb is
 * not NULL) and then die of the same signal. */
void crash_handlers_install(const char *gdb);

/* backtrace() loads libgcc on first use, which is not safe inside a
 * signal handler: this does it beforehand (once in the server, for all
 * its runs). */
void crash_backtrace_preload(void);

#endif
