/*
 * cplrun_fault_recipes.c -- misbehaving recipes for the cplrun fault,
 * security and soak tests: a plugin library of its own
 * (cplrun_fault_recipes.so, built by ../build.py), so that the suite's
 * main test library keeps its list of recipes.
 *
 *   rtest_product  write (or only claim) a product in a chosen way: a
 *                  normal image, a huge sparse file, a symlink, a name
 *                  outside the work folder, or nothing at all
 *   rtest_chatter  log thousands of lines per second for a while, and
 *                  write to stdout/stderr directly with write(2)
 *   rtest_spawn    start a detached daemon (setsid, double fork) that
 *                  sleeps forever, then end or hang
 *   rtest_heap     corrupt the heap with threads running (glibc aborts
 *                  inside free(), holding its malloc lock)
 *
 * See ../README.rst.
 */

#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cpl.h>

#define RFAULT_VERSION 10203 /* 1.2.3, as the other test recipes */
#define RFAULT_PIPE_ID "cplrun_test/1.2.3"
#define RTEST_CONTEXT "cplrun"

#include "../rtest_helpers.h"

typedef struct
{
    const char *name;
    const char *synopsis;
    const char *description;
    cpl_error_code (*fill)(cpl_parameterlist *, const char *);
    cpl_error_code (*run)(cpl_frameset *, const cpl_parameterlist *);
} rfault_definition;

/*-----------------------------------------------------------------------------
                                  Helpers
 -----------------------------------------------------------------------------*/

/* Marks the RAW frames as raw, logs every input frame verbatim
 * ("input TAG 'PATH'") and returns a new frameset of the RAW frames; NULL
 * (with a CPL error) when there is none. */
static cpl_frameset *rfault_used(cpl_frameset *frames)
{
    cpl_frameset *used = cpl_frameset_new();
    cpl_size n = cpl_frameset_get_size(frames);
    for (cpl_size i = 0; i < n; i++) {
        cpl_frame *f = cpl_frameset_get_position(frames, i);
        const char *tag = cpl_frame_get_tag(f);
        if (cpl_frame_get_group(f) == CPL_FRAME_GROUP_PRODUCT) {
            continue;
        }
        cpl_msg_info(cpl_func, "input %s '%s'", tag ? tag : "(none)",
                     cpl_frame_get_filename(f));
        if (tag != NULL && strcmp(tag, "RAW") == 0) {
            cpl_frame_set_group(f, CPL_FRAME_GROUP_RAW);
            cpl_frameset_insert(used, cpl_frame_duplicate(f));
        }
    }
    if (cpl_frameset_get_size(used) == 0) {
        cpl_frameset_delete(used);
        cpl_error_set_message(cpl_func, CPL_ERROR_DATA_NOT_FOUND,
                              "no input frame with tag RAW");
        return NULL;
    }
    return used;
}

static cpl_error_code rfault_save_image(cpl_frameset *frames,
                                        const cpl_parameterlist *parlist,
                                        const cpl_frameset *used,
                                        const char *recipe, const char *catg,
                                        int size, const char *filename)
{
    cpl_image *image = cpl_image_new(size, size, CPL_TYPE_FLOAT);
    cpl_propertylist *applist = cpl_propertylist_new();
    cpl_propertylist_update_string(applist, CPL_DFS_PRO_CATG, catg);
    cpl_image_add_scalar(image, 1.0);
    cpl_error_code code = cpl_dfs_save_image(
        frames, NULL, parlist, used, cpl_frameset_get_position_const(used, 0),
        image, CPL_TYPE_UNSPECIFIED, recipe, applist, NULL, RFAULT_PIPE_ID,
        filename);
    cpl_propertylist_delete(applist);
    cpl_image_delete(image);
    if (code) {
        return cpl_error_set_message(cpl_func, code,
                                     "could not save product %s (%s)",
                                     filename, catg);
    }
    /* written out whole now, not when the FITS cache is closed at exit */
    cpl_fits_set_mode(CPL_FITS_RESTART_CACHING);
    cpl_msg_info(cpl_func, "saved product %s (%s)", filename, catg);
    return CPL_ERROR_NONE;
}

/* Registers filename as a product of the run without writing it. */
static void rfault_claim(cpl_frameset *frames, const char *filename,
                         const char *catg)
{
    cpl_frame *f = cpl_frame_new();
    cpl_frame_set_filename(f, filename);
    cpl_frame_set_tag(f, catg);
    cpl_frame_set_type(f, CPL_FRAME_TYPE_IMAGE);
    cpl_frame_set_group(f, CPL_FRAME_GROUP_PRODUCT);
    cpl_frame_set_level(f, CPL_FRAME_LEVEL_FINAL);
    cpl_frameset_insert(frames, f);
}

static void rfault_card(char *header, int index, const char *text)
{
    char card[81];
    snprintf(card, sizeof card, "%-80s", text);
    memcpy(header + 80 * index, card, 80);
}

/* A valid FITS file of about gib GiB: a BITPIX 8 image of zeros whose data
 * are a hole (ftruncate), so it takes no disk space. */
static cpl_error_code rfault_write_sparse(const char *filename, double gib)
{
    const long long width = 65536;
    long long height = (long long)(gib * 1073741824.0 / width) + 1;
    long long data = width * height;
    long long total = 2880 + (data + 2879) / 2880 * 2880;
    char header[2880];
    char text[81];
    memset(header, ' ', sizeof header);
    rfault_card(header, 0, "SIMPLE  =                    T");
    rfault_card(header, 1, "BITPIX  =                    8");
    rfault_card(header, 2, "NAXIS   =                    2");
    snprintf(text, sizeof text, "NAXIS1  = %20lld", width);
    rfault_card(header, 3, text);
    snprintf(text, sizeof text, "NAXIS2  = %20lld", height);
    rfault_card(header, 4, text);
    rfault_card(header, 5, "HIERARCH ESO PRO CATG = 'BIG'");
    rfault_card(header, 6, "END");
    int fd = open(filename, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        return cpl_error_set_message(cpl_func, CPL_ERROR_FILE_IO,
                                     "cannot create %s: %s", filename,
                                     strerror(errno));
    }
    if (write(fd, header, sizeof header) != (ssize_t)sizeof header
        || ftruncate(fd, (off_t)total) != 0) {
        int saved = errno;
        close(fd);
        return cpl_error_set_message(cpl_func, CPL_ERROR_FILE_IO,
                                     "cannot write %s: %s", filename,
                                     strerror(saved));
    }
    close(fd);
    cpl_msg_info(cpl_func, "wrote sparse product %s (%lld bytes)", filename,
                 total);
    return CPL_ERROR_NONE;
}

static void rfault_write_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w <= 0) {
            return;
        }
        s += w;
        n -= (size_t)w;
    }
}

/*-----------------------------------------------------------------------------
                                rtest_product
 -----------------------------------------------------------------------------*/

static cpl_error_code rtest_product_fill(cpl_parameterlist *list,
                                         const char *context)
{
    RTEST_ADD_VALUE(list, context, "name", CPL_TYPE_STRING,
                    "File name the product is written and registered under.",
                    "rtest_product.fits");
    RTEST_ADD_ENUM(list, context, "kind", CPL_TYPE_STRING,
                   "fits: a size x size image; sparse: a FITS file of gib GiB "
                   "that is a hole; symlink: a symlink to target; junk: a file "
                   "that is not FITS; many: copies files NAME_N; none: only "
                   "register the name.", "fits", 6, "fits", "sparse", "symlink",
                   "junk", "many", "none");
    RTEST_ADD_VALUE(list, context, "copies", CPL_TYPE_INT,
                    "How many files kind=many writes (NAME_N), or names "
                    "kind=none registers (NAME_N when more than one).", 1);
    RTEST_ADD_VALUE(list, context, "size", CPL_TYPE_INT,
                    "Image side for kind=fits.", 4);
    RTEST_ADD_VALUE(list, context, "gib", CPL_TYPE_DOUBLE,
                    "Size in GiB for kind=sparse.", 2.1);
    RTEST_ADD_VALUE(list, context, "target", CPL_TYPE_STRING,
                    "What the symlink of kind=symlink points to.",
                    "/etc/hostname");
    RTEST_ADD_VALUE(list, context, "also_ok", CPL_TYPE_BOOL,
                    "First write a normal product rtest_product_ok.fits (OK).",
                    0);
    RTEST_ADD_VALUE(list, context, "close_fds", CPL_TYPE_BOOL,
                    "First close every file descriptor above 2, as code that "
                    "daemonises does (the runner's own included).", 0);
    return CPL_ERROR_NONE;
}

static cpl_error_code rtest_product(cpl_frameset *frames,
                                    const cpl_parameterlist *parlist)
{
    const char *recipe = "rtest_product";
    const char *name = rtest_get_string(parlist, recipe, "name");
    const char *kind = rtest_get_string(parlist, recipe, "kind");
    const int size = rtest_get_int(parlist, recipe, "size");
    const double gib = rtest_get_double(parlist, recipe, "gib");
    const char *target = rtest_get_string(parlist, recipe, "target");
    const int also_ok = rtest_get_bool(parlist, recipe, "also_ok");
    const int close_fds = rtest_get_bool(parlist, recipe, "close_fds");
    const int copies = rtest_get_int(parlist, recipe, "copies");
    cpl_error_code code = CPL_ERROR_NONE;

    if (close_fds) {
        for (int fd = 3; fd < 1024; fd++) {
            close(fd);
        }
    }
    cpl_frameset *used = rfault_used(frames);

    if (used == NULL) {
        return cpl_error_set_where(cpl_func);
    }
    if (also_ok) {
        code = rfault_save_image(frames, parlist, used, recipe, "OK", 2,
                                 "rtest_product_ok.fits");
    }
    if (code == CPL_ERROR_NONE) {
        if (strcmp(kind, "fits") == 0) {
            code = rfault_save_image(frames, parlist, used, recipe, "PRODUCT",
                                     size, name);
        }
        else if (strcmp(kind, "sparse") == 0) {
            code = rfault_write_sparse(name, gib);
            if (code == CPL_ERROR_NONE) {
                rfault_claim(frames, name, "BIG");
            }
        }
        else if (strcmp(kind, "symlink") == 0) {
            if (symlink(target, name) != 0) {
                code = cpl_error_set_message(cpl_func, CPL_ERROR_FILE_IO,
                                             "symlink %s -> %s: %s", name,
                                             target, strerror(errno));
            }
            else {
                cpl_msg_info(cpl_func, "made symlink %s -> %s", name, target);
                rfault_claim(frames, name, "PRODUCT");
            }
        }
        else if (strcmp(kind, "many") == 0) {
            for (int i = 0; i < copies && code == CPL_ERROR_NONE; i++) {
                char *file = cpl_sprintf("%s_%05d", name, i);
                FILE *f = fopen(file, "w");
                if (f == NULL || fputs("SIMPLE  =", f) < 0 || fclose(f) != 0) {
                    code = cpl_error_set_message(cpl_func, CPL_ERROR_FILE_IO,
                                                 "cannot write %s", file);
                }
                else {
                    rfault_claim(frames, file, "PRODUCT");
                }
                cpl_free(file);
            }
        }
        else if (strcmp(kind, "junk") == 0) {
            FILE *junk = fopen(name, "w");
            if (junk == NULL || fputs("SIMPLE  = not FITS after all\n", junk) < 0
                || fclose(junk) != 0) {
                code = cpl_error_set_message(cpl_func, CPL_ERROR_FILE_IO,
                                             "cannot write %s", name);
            }
            else {
                cpl_msg_info(cpl_func, "wrote junk product %s", name);
                rfault_claim(frames, name, "PRODUCT");
            }
        }
        else if (copies == 1) {
            cpl_msg_info(cpl_func, "claiming product %s", name);
            rfault_claim(frames, name, "PRODUCT");
        }
        else {
            for (int i = 0; i < copies; i++) {
                char *file = cpl_sprintf("%s_%05d", name, i);
                rfault_claim(frames, file, "PRODUCT");
                cpl_free(file);
            }
        }
    }
    cpl_frameset_delete(used);
    return code;
}

/*-----------------------------------------------------------------------------
                                rtest_chatter
 -----------------------------------------------------------------------------*/

static cpl_error_code rtest_chatter_fill(cpl_parameterlist *list,
                                         const char *context)
{
    RTEST_ADD_VALUE(list, context, "seconds", CPL_TYPE_DOUBLE,
                    "How long to keep logging [s].", 2.0);
    RTEST_ADD_VALUE(list, context, "rate", CPL_TYPE_INT,
                    "cpl_msg_info() lines per second.", 5000);
    RTEST_ADD_VALUE(list, context, "direct", CPL_TYPE_INT,
                    "Lines written with write(2) straight to file descriptors "
                    "1 and 2 (each).", 1000);
    return CPL_ERROR_NONE;
}

static cpl_error_code rtest_chatter(cpl_frameset *frames,
                                    const cpl_parameterlist *parlist)
{
    const char *recipe = "rtest_chatter";
    const double seconds = rtest_get_double(parlist, recipe, "seconds");
    const int rate = rtest_get_int(parlist, recipe, "rate");
    const int direct = rtest_get_int(parlist, recipe, "direct");
    cpl_frameset *used = rfault_used(frames);
    cpl_error_code code;
    long long count = 0;
    char line[128];

    if (used == NULL) {
        return cpl_error_set_where(cpl_func);
    }
    const double start = rtest_now();
    while (rtest_now() - start < seconds) {
        /* in bursts of one hundredth of a second */
        const long long due = (long long)((rtest_now() - start) * rate) + 1;
        while (count < due) {
            cpl_msg_info(cpl_func, "chatter %07lld", count);
            count++;
        }
        rtest_sleep(0.01);
    }
    cpl_msg_info(cpl_func, "chatter done: %lld lines", count);
    for (int i = 0; i < direct; i++) {
        int n = snprintf(line, sizeof line, "direct stdout %d\n", i);
        rfault_write_all(STDOUT_FILENO, line, (size_t)n);
        n = snprintf(line, sizeof line, "direct stderr %d\n", i);
        rfault_write_all(STDERR_FILENO, line, (size_t)n);
    }
    /* not UTF-8, a NUL, and a last line without its newline */
    rfault_write_all(STDOUT_FILENO, "bytes \xff\xfe\x00 end\n", 14);
    rfault_write_all(STDERR_FILENO, "no newline at the end", 21);
    code = rfault_save_image(frames, parlist, used, recipe, "CHATTER_PRODUCT",
                             1, "rtest_chatter.fits");
    cpl_frameset_delete(used);
    return code;
}

/*-----------------------------------------------------------------------------
                                 rtest_spawn
 -----------------------------------------------------------------------------*/

static cpl_error_code rtest_spawn_fill(cpl_parameterlist *list,
                                       const char *context)
{
    RTEST_ADD_VALUE(list, context, "detach", CPL_TYPE_BOOL,
                    "The daemon leaves the process group and session (setsid, "
                    "double fork).", 1);
    RTEST_ADD_VALUE(list, context, "seconds", CPL_TYPE_DOUBLE,
                    "How long the recipe sleeps after starting the daemon [s].",
                    0.0);
    return CPL_ERROR_NONE;
}

static cpl_error_code rtest_spawn(cpl_frameset *frames,
                                  const cpl_parameterlist *parlist)
{
    const char *recipe = "rtest_spawn";
    const int detach = rtest_get_bool(parlist, recipe, "detach");
    const double seconds = rtest_get_double(parlist, recipe, "seconds");
    cpl_frameset *used = rfault_used(frames);
    cpl_error_code code;
    int fds[2];

    if (used == NULL) {
        return cpl_error_set_where(cpl_func);
    }
    if (pipe(fds) != 0) {
        cpl_frameset_delete(used);
        return cpl_error_set_message(cpl_func, CPL_ERROR_UNSPECIFIED,
                                     "pipe: %s", strerror(errno));
    }
    fflush(NULL);
    pid_t first = fork();
    if (first == 0) {
        close(fds[0]);
        if (detach) {
            setsid();
            if (fork() != 0) {
                _exit(0);       /* the daemon is reparented */
            }
        }
        signal(SIGTERM, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        pid_t me = getpid();
        rfault_write_all(fds[1], (const char *)&me, sizeof me);
        close(fds[1]);
        for (;;) {
            sleep(60);
        }
    }
    close(fds[1]);
    pid_t daemon_pid = -1;
    if (first < 0 || read(fds[0], &daemon_pid, sizeof daemon_pid)
                         != (ssize_t)sizeof daemon_pid) {
        close(fds[0]);
        cpl_frameset_delete(used);
        return cpl_error_set_message(cpl_func, CPL_ERROR_UNSPECIFIED,
                                     "could not start the daemon");
    }
    close(fds[0]);
    if (detach) {
        waitpid(first, NULL, 0);    /* as a daemonizing program does */
    }
    FILE *pidfile = fopen("rtest_spawn_child.pid", "w");
    if (pidfile != NULL) {
        fprintf(pidfile, "%ld\n", (long)daemon_pid);
        fclose(pidfile);
    }
    cpl_msg_info(cpl_func, "started daemon %ld (%s)", (long)daemon_pid,
                 detach ? "detached" : "in the group");
    fflush(NULL);
    rtest_sleep(seconds);
    code = rfault_save_image(frames, parlist, used, recipe, "SPAWN_PRODUCT", 1,
                             "rtest_spawn.fits");
    cpl_frameset_delete(used);
    return code;
}

/*-----------------------------------------------------------------------------
                                 rtest_heap
 -----------------------------------------------------------------------------*/

static cpl_error_code rtest_heap_fill(cpl_parameterlist *list,
                                      const char *context)
{
    RTEST_ADD_VALUE(list, context, "threads", CPL_TYPE_INT,
                    "Threads running (and allocating) while the heap is "
                    "corrupted; 0: none.", 2);
    return CPL_ERROR_NONE;
}

static volatile int rfault_stop = 0;

static void *rfault_churn(void *arg)
{
    (void)arg;
    while (!rfault_stop) {
        free(malloc(24));
    }
    return NULL;
}

static cpl_error_code rtest_heap(cpl_frameset *frames,
                                 const cpl_parameterlist *parlist)
{
    const char *recipe = "rtest_heap";
    const int threads = rtest_get_int(parlist, recipe, "threads");
    cpl_frameset *used = rfault_used(frames);
    pthread_t tids[16];

    if (used == NULL) {
        return cpl_error_set_where(cpl_func);
    }
    for (int i = 0; i < threads && i < 16; i++) {
        pthread_create(&tids[i], NULL, rfault_churn, NULL);
    }
    cpl_msg_info(cpl_func, "corrupting the heap with %d threads", threads);
    fflush(NULL);
    /* A chunk too large for the tcache and the fastbins, whose neighbour's
     * size field is overwritten: free() finds "invalid next size" in
     * _int_free, holding the arena lock when the process has threads, and
     * aborts. */
    char *volatile a = malloc(4000);
    memset(a, 1, 4000);
    /* glibc's chunk layout: the size is the word before the memory, the
     * next chunk starts size bytes after this one (16 before the memory) */
    size_t size = ((size_t *)a)[-1] & ~(size_t)7;
    size_t *next_size = (size_t *)(a - 16 + size + 8);
    cpl_msg_debug(cpl_func, "chunk size %zu, next chunk's size %zu", size,
                  *next_size);
    *next_size = 1;             /* impossibly small */
    free(a);
    rfault_stop = 1;
    cpl_frameset_delete(used);
    return cpl_error_set_message(cpl_func, CPL_ERROR_UNSPECIFIED,
                                 "the heap corruption went unnoticed");
}

/*-----------------------------------------------------------------------------
                              Plugin callbacks
 -----------------------------------------------------------------------------*/

static const rfault_definition rfault_recipes[] = {
    { "rtest_product", "Write or claim a product in a chosen way",
      "Writes the product under the file name 'name' as chosen by 'kind':\n"
      "  fits     a size x size float image of ones (PRODUCT)\n"
      "  sparse   a valid FITS file of 'gib' GiB whose data are a hole (BIG)\n"
      "  symlink  a symbolic link to 'target' (PRODUCT)\n"
      "  junk     a file that starts like FITS but is not (PRODUCT)\n"
      "  many     'copies' such files, 'name'_00000... (PRODUCT)\n"
      "  none     nothing; the name is only registered (PRODUCT), or\n"
      "           'copies' names 'name'_00000... when copies > 1\n"
      "With also_ok=true, first writes OK rtest_product_ok.fits.\n"
      "With close_fds=true, first closes every descriptor above 2.\n"
      "Logs every input frame as \"input TAG 'PATH'\".\n"
      "Input frames:\n"
      "  RAW  (1..n)  any files, only recorded in the product headers\n",
      rtest_product_fill, rtest_product },
    { "rtest_chatter", "Log thousands of lines per second",
      "Logs 'rate' cpl_msg_info() lines per second ('chatter NNNNNNN') for\n"
      "'seconds' seconds, then writes 'direct' lines 'direct stdout N' and\n"
      "'direct stderr N' with write(2) to file descriptors 1 and 2, some\n"
      "bytes that are not UTF-8 (with a NUL), and a last stderr line\n"
      "without newline.  Writes CHATTER_PRODUCT rtest_chatter.fits.\n"
      "Input frames:\n"
      "  RAW  (1..n)  any files, only recorded in the product headers\n",
      rtest_chatter_fill, rtest_chatter },
    { "rtest_spawn", "Start a daemon that outlives the recipe",
      "Forks a process that sleeps forever; with detach=true it calls\n"
      "setsid() and forks again, so the sleeper is in no process group of\n"
      "the run.  Its pid is logged ('started daemon PID') and written to\n"
      "rtest_spawn_child.pid.  Then sleeps 'seconds' and writes\n"
      "SPAWN_PRODUCT rtest_spawn.fits.\n"
      "Input frames:\n"
      "  RAW  (1..n)  any files, only recorded in the product headers\n",
      rtest_spawn_fill, rtest_spawn },
    { "rtest_heap", "Corrupt the heap with threads running",
      "Starts 'threads' threads that allocate and free in a loop, then\n"
      "overwrites the size of a heap chunk so that glibc detects it inside\n"
      "free() (with its malloc lock held when there are threads) and\n"
      "aborts: a crash whose handler must not need malloc.\n"
      "Input frames:\n"
      "  RAW  (1..n)  any files, only recorded in the product headers\n",
      rtest_heap_fill, rtest_heap },
};

#define RFAULT_N (sizeof rfault_recipes / sizeof rfault_recipes[0])

static const rfault_definition *rfault_lookup(cpl_plugin *plugin)
{
    const char *name = plugin != NULL ? cpl_plugin_get_name(plugin) : NULL;
    for (size_t i = 0; name != NULL && i < RFAULT_N; i++) {
        if (strcmp(rfault_recipes[i].name, name) == 0) {
            return &rfault_recipes[i];
        }
    }
    cpl_error_set_message(cpl_func, CPL_ERROR_ILLEGAL_INPUT, "unknown recipe");
    return NULL;
}

static int rfault_create(cpl_plugin *plugin)
{
    const rfault_definition *def = rfault_lookup(plugin);
    if (def == NULL) {
        return (int)cpl_error_set_where(cpl_func);
    }
    cpl_recipe *recipe = (cpl_recipe *)plugin;
    recipe->parameters = cpl_parameterlist_new();
    char *context = cpl_sprintf("%s.%s", RTEST_CONTEXT, def->name);
    cpl_error_code code = def->fill(recipe->parameters, context);
    cpl_free(context);
    return (int)code;
}

static int rfault_exec(cpl_plugin *plugin)
{
    const rfault_definition *def = rfault_lookup(plugin);
    cpl_recipe *recipe = (cpl_recipe *)plugin;
    if (def == NULL || recipe->frames == NULL) {
        return (int)cpl_error_set_message(cpl_func, CPL_ERROR_NULL_INPUT,
                                          "no recipe or no frames");
    }
    cpl_errorstate prestate = cpl_errorstate_get();
    cpl_error_code code = def->run(recipe->frames, recipe->parameters);
    if (code == CPL_ERROR_NONE && !cpl_errorstate_is_equal(prestate)) {
        code = cpl_error_get_code();
    }
    if (code != CPL_ERROR_NONE) {
        cpl_msg_error(cpl_func, "%s failed: %s", def->name,
                      cpl_error_get_message());
    }
    return (int)code;
}

static int rfault_destroy(cpl_plugin *plugin)
{
    if (plugin == NULL) {
        return -1;
    }
    cpl_recipe *recipe = (cpl_recipe *)plugin;
    cpl_parameterlist_delete(recipe->parameters);
    recipe->parameters = NULL;
    return 0;
}

int cpl_plugin_get_info(cpl_pluginlist *list);

int cpl_plugin_get_info(cpl_pluginlist *list)
{
    if (list == NULL) {
        return 1;
    }
    for (size_t i = 0; i < RFAULT_N; i++) {
        const rfault_definition *def = &rfault_recipes[i];
        cpl_plugin *plugin = (cpl_plugin *)cpl_calloc(1, sizeof(cpl_recipe));
        if (cpl_plugin_init(plugin, CPL_PLUGIN_API, RFAULT_VERSION,
                            CPL_PLUGIN_TYPE_RECIPE, def->name, def->synopsis,
                            def->description, "cplrun developers",
                            "cplrun@example.org",
                            "Copyright (C) 2024 cplrun developers. GPL v2 or "
                            "later. ABSOLUTELY NO WARRANTY.",
                            rfault_create, rfault_exec, rfault_destroy)
            || cpl_pluginlist_append(list, plugin)) {
            cpl_plugin_delete(plugin);
            return 1;
        }
    }
    return 0;
}
