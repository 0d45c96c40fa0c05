/* One recipe run, inside the process the server forked for it. */
#include "runner.h"
#include "fdio.h"
#include "json_out.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_ERRORS 64

typedef struct {
    int code;
    char *message;
    char *function;
    char *file;
    unsigned line;
} error_entry;

static error_entry errors[MAX_ERRORS];
static int error_count = 0;

typedef struct {
    char *tag;
    char *file;
} product_entry;

static product_entry *products = NULL;
static cpl_size product_count = 0;

static char *dup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

/* cpl_errorstate_dump() makes each recorded error current in turn. */
static void collect_error(unsigned self, unsigned first, unsigned last)
{
    (void)first;
    (void)last;
    if (self == 0 || error_count == MAX_ERRORS) {
        return;
    }
    error_entry *e = &errors[error_count++];
    e->code = (int)cpl_error_get_code();
    e->message = dup_or_null(cpl_error_get_message());
    e->function = dup_or_null(cpl_error_get_function());
    e->file = dup_or_null(cpl_error_get_file());
    e->line = cpl_error_get_line();
}

static cpl_msg_severity severity(const char *level)
{
    if (level == NULL || strcmp(level, "debug") == 0) return CPL_MSG_DEBUG;
    if (strcmp(level, "info") == 0)    return CPL_MSG_INFO;
    if (strcmp(level, "warning") == 0) return CPL_MSG_WARNING;
    if (strcmp(level, "error") == 0)   return CPL_MSG_ERROR;
    return CPL_MSG_OFF;
}

/* Splits "key=value" (parameters, frames: keys hold no '='); returns the
 * value, or NULL with an error text when the item has no '='. */
static const char *split_item(const char *item, const char *what, char *key,
                              size_t key_len, char *err, size_t err_len)
{
    const char *eq = strchr(item, '=');
    if (eq == NULL) {
        snprintf(err, err_len, "malformed %s item '%s'", what, item);
        return NULL;
    }
    snprintf(key, key_len, "%.*s", (int)(eq - item), item);
    return eq + 1;
}

/* A string parameter declared without a default holds NULL, and CPL's own
 * product header code (cpl_dfs_setup_product_header) calls strlen() on its
 * value: esorex and python-cpl hand the recipe "" instead, and so do we. */
static void empty_null_strings(cpl_parameterlist *params)
{
    for (cpl_parameter *p = cpl_parameterlist_get_first(params); p != NULL;
         p = cpl_parameterlist_get_next(params)) {
        if (cpl_parameter_get_type(p) == CPL_TYPE_STRING
            && cpl_parameter_get_string(p) == NULL) {
            cpl_parameter_set_string(p, "");
        }
    }
}

/* Sets one parameter from "name=value"; returns an error text or NULL. */
static const char *set_parameter(cpl_parameterlist *params, const char *item,
                                 char *err, size_t err_len)
{
    char name[1024];
    const char *value = split_item(item, "parameter", name, sizeof name, err,
                                   err_len);
    if (value == NULL) {
        return err;
    }
    cpl_parameter *p = cpl_parameterlist_find(params, name);
    if (p == NULL) {
        snprintf(err, err_len, "unknown parameter '%s'", name);
        return err;
    }
    /* Where a number parsed from value ends; stays NULL for the types
     * that take value as it is (an empty string is a string). */
    char *end = NULL;
    cpl_error_code code = CPL_ERROR_NONE;
    errno = 0;
    switch (cpl_parameter_get_type(p)) {
    case CPL_TYPE_BOOL:
        code = cpl_parameter_set_bool(p, strcmp(value, "true") == 0);
        break;
    case CPL_TYPE_INT: {
        long v = strtol(value, &end, 10);
        if (v < INT_MIN || v > INT_MAX) {
            errno = ERANGE; /* refused, never truncated */
        } else {
            code = cpl_parameter_set_int(p, (int)v);
        }
        break;
    }
    case CPL_TYPE_DOUBLE: {
        double v = strtod(value, &end);
        if (errno == ERANGE && !isinf(v)) {
            /* An underflow: the value is a denormal (or 0), exactly what
             * was asked for; only an overflow (HUGE_VAL) is refused. */
            errno = 0;
        }
        code = cpl_parameter_set_double(p, v);
        break;
    }
    case CPL_TYPE_STRING:
        code = cpl_parameter_set_string(p, value);
        break;
    default:
        snprintf(err, err_len, "parameter '%s' has an unsupported type", name);
        return err;
    }
    if (errno != 0 || (end != NULL && (end == value || *end != '\0'))
        || code != CPL_ERROR_NONE) {
        snprintf(err, err_len, "parameter '%s' refuses value '%s'%s%s", name,
                 value, code != CPL_ERROR_NONE ? ": " : "",
                 code != CPL_ERROR_NONE ? cpl_error_get_message() : "");
        return err;
    }
    return NULL;
}

static const char *add_frame(cpl_frameset *frames, const char *item,
                             char *err, size_t err_len)
{
    char tag[1024];
    const char *path = split_item(item, "frame", tag, sizeof tag, err, err_len);
    if (path == NULL) {
        return err;
    }
    cpl_frame *frame = cpl_frame_new();
    cpl_frame_set_filename(frame, path);
    cpl_frame_set_tag(frame, tag);
    cpl_frameset_insert(frames, frame);
    return NULL;
}

/* Copied out of the frame set, which must be freed before CPL can tell
 * whether the recipe left memory allocated. */
static void collect_products(const cpl_frameset *frames)
{
    cpl_size n = cpl_frameset_get_size(frames);
    products = calloc((size_t)n + 1, sizeof *products);
    for (cpl_size i = 0; i < n; i++) {
        const cpl_frame *f = cpl_frameset_get_position_const(frames, i);
        if (cpl_frame_get_group(f) == CPL_FRAME_GROUP_PRODUCT) {
            products[product_count].tag = dup_or_null(cpl_frame_get_tag(f));
            products[product_count].file = dup_or_null(cpl_frame_get_filename(f));
            product_count++;
        }
    }
}

/* esorex's switches, read from the recipe's environment as esorex reads
 * them: set to anything but "", "0", "false" or "no". */
static int switched_on(const char *name)
{
    const char *value = getenv(name);
    return value != NULL && *value != '\0' && strcmp(value, "0") != 0
           && strcasecmp(value, "false") != 0 && strcasecmp(value, "no") != 0;
}

/* Whether signing may write to the product path: a regular file of the
 * run's folder (folder: its real path), not a symbolic link or a second
 * name of a file elsewhere.  Anything else is refused by the Python side,
 * which must find it untouched. */
static int is_own_file(const char *path, const char *folder)
{
    struct stat st;
    if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
        return 0;
    }
    char *real = realpath(path, NULL);
    size_t len = strlen(folder);
    int inside = real != NULL && strncmp(real, folder, len) == 0
                 && real[len] == '/';
    free(real);
    return inside;
}

/* As esorex and python-cpl do: each product gets its DATAMD5 (the recipe
 * wrote "Not computed"), CHECKSUM and DATASUM, unless the environment says
 * ESOREX_NO_DATAMD5 or ESOREX_NO_CHECKSUM.  A product that cannot be
 * updated (say, one registered but never written) is not a recipe error:
 * the Python side reports the file. */
static void sign_products(const cpl_frameset *frames)
{
    unsigned flags = 0;
    if (!switched_on("ESOREX_NO_DATAMD5")) {
        flags |= CPL_DFS_SIGNATURE_DATAMD5;
    }
    if (!switched_on("ESOREX_NO_CHECKSUM")) {
        flags |= CPL_DFS_SIGNATURE_CHECKSUM;
    }
    char *folder = realpath(".", NULL);
    if (flags == 0 || folder == NULL) {
        free(folder);
        return;
    }
    cpl_errorstate products_written = cpl_errorstate_get();
    cpl_frameset *own = cpl_frameset_new();
    cpl_size n = cpl_frameset_get_size(frames);
    for (cpl_size i = 0; i < n; i++) {
        const cpl_frame *f = cpl_frameset_get_position_const(frames, i);
        const char *path = cpl_frame_get_filename(f);
        if (cpl_frame_get_group(f) == CPL_FRAME_GROUP_PRODUCT && path != NULL
            && is_own_file(path, folder)) {
            cpl_frameset_insert(own, cpl_frame_duplicate(f));
        }
    }
    cpl_dfs_sign_products(own, flags);
    cpl_frameset_delete(own);
    free(folder);
    cpl_errorstate_set(products_written);
}

static void add_usage(json_writer *w)
{
    /* The run's own figures and those of the processes it waited for, as
     * wait4() would give them to the server once the run has exited. */
    struct rusage self, children;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &children);
    json_key(w, "utime");
    json_double(w, self.ru_utime.tv_sec + children.ru_utime.tv_sec
                       + (self.ru_utime.tv_usec + children.ru_utime.tv_usec) * 1e-6);
    json_key(w, "stime");
    json_double(w, self.ru_stime.tv_sec + children.ru_stime.tv_sec
                       + (self.ru_stime.tv_usec + children.ru_stime.tv_usec) * 1e-6);
    json_key(w, "maxrss_kb");
    json_int(w, self.ru_maxrss > children.ru_maxrss ? self.ru_maxrss
                                                    : children.ru_maxrss);
}

/* The result file, for a run whose report pipe is gone (a recipe that
 * closed descriptors it did not own).  The rename makes it appear whole or
 * not at all: a process that dies while writing leaves no result, hence a
 * crash report. */
static void write_result_file(const char *text, size_t len)
{
    int fd = open(CPLRUN_RESULT_FILE ".part",
                  O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        return;
    }
    int written = fd_write_all(fd, text, len) == 0;
    if (close(fd) == 0 && written) {
        rename(CPLRUN_RESULT_FILE ".part", CPLRUN_RESULT_FILE);
    }
}

/* The report pipe as it was before the recipe ran: a recipe that closed
 * it may have opened a file under the same number since. */
static struct stat report_pipe;

static int is_report_pipe(int fd)
{
    struct stat now;
    return fstat(fd, &now) == 0 && now.st_dev == report_pipe.st_dev
           && now.st_ino == report_pipe.st_ino;
}

/* The run's result, one JSON line, to the server through the report pipe:
 * it is complete when its newline arrives, and needs no disk space (a
 * recipe that filled the disk still gets its failure reported). */
static void write_result(int report_fd, int return_code,
                         const char *setup_error, int memory_is_empty)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (out == NULL) {
        return;
    }
    json_writer w;
    json_init(&w, out);
    json_begin_object(&w);
    json_key(&w, "return_code");
    json_int(&w, return_code);
    json_key(&w, "setup_error");
    json_string(&w, setup_error);
    json_key(&w, "memory_is_empty");
    json_int(&w, memory_is_empty);
    json_key(&w, "errors");
    json_begin_array(&w);
    for (int i = 0; i < error_count; i++) {
        json_begin_object(&w);
        json_key(&w, "code");
        json_int(&w, errors[i].code);
        json_key(&w, "message");
        json_string(&w, errors[i].message);
        json_key(&w, "function");
        json_string(&w, errors[i].function);
        json_key(&w, "file");
        json_string(&w, errors[i].file);
        json_key(&w, "line");
        json_int(&w, errors[i].line);
        json_end_object(&w);
    }
    json_end_array(&w);
    json_key(&w, "products");
    json_begin_array(&w);
    for (cpl_size i = 0; i < product_count; i++) {
        json_begin_object(&w);
        json_key(&w, "tag");
        json_string(&w, products[i].tag);
        json_key(&w, "file");
        json_string(&w, products[i].file);
        json_end_object(&w);
    }
    json_end_array(&w);
    add_usage(&w);
    json_end_object(&w);
    fputc('\n', out);
    if (fclose(out) != 0) {
        return;
    }
    if (len > CPLRUN_MAX_REPORT || !is_report_pipe(report_fd)
        || fd_write_all(report_fd, text, len) != 0) {
        write_result_file(text, len);
    }
}

static void redirect_output(void)
{
    int devnull = open("/dev/null", O_RDONLY);
    int out = open(CPLRUN_OUTPUT_FILE, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (devnull >= 0) {
        dup2(devnull, STDIN_FILENO);
        close(devnull);
    }
    if (out >= 0) {
        dup2(out, STDOUT_FILENO);
        dup2(out, STDERR_FILENO);
        close(out);
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
}

/* Ends the run: its output and log complete first, the result last, so
 * that whatever reads the result finds the run's files whole. */
static void __attribute__((noreturn)) finish_run(int report_fd, int return_code,
                       const char *setup_error, int memory_is_empty)
{
    fflush(stdout);
    fflush(stderr);
    cpl_msg_stop_log();
    write_result(report_fd, return_code, setup_error, memory_is_empty);
    _exit(0);
}

void execute_run(const request *req, int report_fd, const char *gdb)
{
    const char *workdir = request_get(req, "workdir");
    if (workdir == NULL || chdir(workdir) != 0) {
        _exit(120);
    }
    /* Here, not in the waiting spare: a backtrace goes into the run's
     * folder, and only a run's crash is a run's. */
    crash_handlers_install(gdb);
    fstat(report_fd, &report_pipe);
    char err[4096];
    const char *plugin_path = request_get(req, "plugin");
    /* Found in the cache the server filled before it forked this process,
     * unless the file changed since. */
    loaded_plugin *lib = plugin_path != NULL
                             ? plugin_cache_get(plugin_path, err, sizeof err)
                             : NULL;
    if (lib == NULL) {
        finish_run(report_fd, -1, plugin_path != NULL ? err : "no plugin",
                   -1);
    }
    /* With CPL's memory check on, what the server allocated before the
     * fork must not count against the recipe: the run registers its
     * library's recipes itself and frees them before the check (as esorex
     * does).  Before the output and the log go to the run's files, so
     * that registration chatter stays out of both. */
    cpl_pluginlist *own_recipes = cpl_memory_is_empty() != -1
                                      ? plugin_fresh_list(lib) : NULL;
    redirect_output();
    cpl_msg_set_log_name(CPLRUN_LOG_FILE);
    cpl_msg_set_log_level(severity(request_get(req, "loglevel")));
    cpl_msg_set_level(CPL_MSG_OFF);

    const char *setup_error = NULL;
    const char *name = request_get(req, "recipe");
    cpl_plugin *plugin = name != NULL ? plugin_find_recipe(lib, name) : NULL;
    if (plugin == NULL) {
        snprintf(err, sizeof err, "no recipe '%s' in %s", name ? name : "",
                 lib->path);
        finish_run(report_fd, -1, err, -1);
    }
    cpl_recipe *recipe = (cpl_recipe *)plugin;
    cpl_plugin_func init = cpl_plugin_get_init(plugin);
    if (init == NULL || init(plugin) != 0) {
        snprintf(err, sizeof err, "recipe '%s' failed to initialise", name);
        finish_run(report_fd, -1, err, -1);
    }
    recipe->frames = cpl_frameset_new();
    empty_null_strings(recipe->parameters);
    for (int i = 0; i < req->count && setup_error == NULL; i++) {
        const request_field *f = &req->fields[i];
        if (strcmp(f->key, "param") == 0) {
            setup_error = set_parameter(recipe->parameters, f->value, err,
                                        sizeof err);
        } else if (strcmp(f->key, "frame") == 0) {
            setup_error = add_frame(recipe->frames, f->value, err, sizeof err);
        }
    }
    if (setup_error != NULL) {
        finish_run(report_fd, -1, setup_error, -1);
    }

    cpl_errorstate before = cpl_errorstate_get();
    int return_code = cpl_plugin_get_exec(plugin)(plugin);
    if (!cpl_errorstate_is_equal(before)) {
        cpl_errorstate_dump(before, CPL_FALSE, collect_error);
    }
    if (return_code == 0) {
        sign_products(recipe->frames);
    }
    collect_products(recipe->frames);
    cpl_frameset_delete(recipe->frames);
    recipe->frames = NULL;
    cpl_plugin_func deinit = cpl_plugin_get_deinit(plugin);
    if (deinit != NULL) {
        deinit(plugin);
    }
    if (own_recipes != NULL) {
        cpl_pluginlist_delete(own_recipes);
    }
    int memory_is_empty = cpl_memory_is_empty();
    const char *dump = request_get(req, "memory_dump");
    if (dump != NULL && (strcmp(dump, "2") == 0
                         || (strcmp(dump, "1") == 0 && memory_is_empty == 0))) {
        cpl_memory_dump();
    }
    finish_run(report_fd, return_code, NULL, memory_is_empty);
}
