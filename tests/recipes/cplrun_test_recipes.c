/*
 * cplrun_test_recipes.c -- small CPL recipes used by the cplrun test suite.
 *
 * One plugin library exporting cpl_plugin_get_info() with several recipes:
 *
 *   rtest_copy    (recipe v2)  copy the first RAW image to a product
 *   rtest_params  (recipe v2)  parameters of every type and class, echoed as QC
 *   rtest_crash                die with a signal / abort / exit()
 *   rtest_hang                 sleep for a long time (optionally fork a child)
 *   rtest_error                fail with a chained CPL error
 *   rtest_leak                 leak memory
 *   rtest_biglog               produce a lot of output
 *   rtest_omp                  report OpenMP team size and an env variable
 *
 * See README.rst in this directory for the parameters and products.
 *
 * Build: see build.py (gcc -shared -fPIC -O1 -g -fopenmp ... -lcplcore
 *        -lcplui -lcpldfs -lm).
 */

#define _GNU_SOURCE

#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <omp.h>

#include <cpl.h>

/*-----------------------------------------------------------------------------
                                  Constants
 -----------------------------------------------------------------------------*/

#define RTEST_VERSION 10203 /* 1.2.3 */
#define RTEST_PIPE_ID "cplrun_test/1.2.3"
#define RTEST_CONTEXT "cplrun"
#define RTEST_AUTHOR "cplrun developers"
#define RTEST_EMAIL "cplrun@example.org"
#define RTEST_COPYRIGHT                                                        \
    "Copyright (C) 2024 cplrun developers. This is free software: it may be "  \
    "redistributed and/or modified under the terms of the GNU General Public " \
    "License, version 2 or later. It comes with ABSOLUTELY NO WARRANTY."

#define RTEST_TAG_RAW "RAW"
#define RTEST_TAG_CALIB "CALIB"
#define RTEST_TAG_PARTIAL "PARTIAL"
#define RTEST_PARTIAL_FILE "partial.fits"

#include "rtest_helpers.h"

/*-----------------------------------------------------------------------------
                              Recipe definitions
 -----------------------------------------------------------------------------*/

typedef cpl_error_code (*rtest_fill_func)(cpl_parameterlist *, const char *);
typedef cpl_error_code (*rtest_config_func)(cpl_recipeconfig *);
typedef cpl_error_code (*rtest_run_func)(cpl_frameset *,
                                         const cpl_parameterlist *);

typedef struct
{
    const char *name;
    const char *synopsis;
    const char *description;
    rtest_fill_func fill;     /* add the parameters, may be NULL */
    rtest_config_func config; /* non-NULL: cpl_recipe2 with a config */
    rtest_run_func run;
} rtest_definition;

static const rtest_definition *rtest_lookup(const char *name);

/*-----------------------------------------------------------------------------
                                Frame helpers
 -----------------------------------------------------------------------------*/

/* Classify the input frames (RAW -> raw group, CALIB -> calib group) and
   return a new frameset with copies of the frames the recipe uses.
   At least one RAW frame is required (cpl_dfs_save_*() refuses to save a
   product without any used frames): without one, a CPL error is set and
   NULL returned. */
static cpl_frameset *rtest_used_frames(cpl_frameset *frames)
{
    cpl_frameset *used = cpl_frameset_new();
    cpl_size n = cpl_frameset_get_size(frames);

    for (cpl_size i = 0; i < n; i++) {
        cpl_frame *frame = cpl_frameset_get_position(frames, i);
        const char *tag = cpl_frame_get_tag(frame);

        if (tag == NULL) {
            continue;
        }
        if (strcmp(tag, RTEST_TAG_RAW) == 0) {
            cpl_frame_set_group(frame, CPL_FRAME_GROUP_RAW);
        }
        else if (strcmp(tag, RTEST_TAG_CALIB) == 0) {
            cpl_frame_set_group(frame, CPL_FRAME_GROUP_CALIB);
        }
        else {
            if (cpl_frame_get_group(frame) != CPL_FRAME_GROUP_PRODUCT) {
                cpl_msg_info(cpl_func, "ignoring frame %s with tag %s",
                             cpl_frame_get_filename(frame), tag);
            }
            continue;
        }
        cpl_frameset_insert(used, cpl_frame_duplicate(frame));
    }
    if (cpl_frameset_count_tags(used, RTEST_TAG_RAW) == 0) {
        cpl_frameset_delete(used);
        cpl_error_set_message(cpl_func, CPL_ERROR_DATA_NOT_FOUND,
                              "no input frame with tag " RTEST_TAG_RAW);
        return NULL;
    }
    return used;
}

/* The first RAW frame of a frameset, or NULL. */
static const cpl_frame *rtest_first_raw(const cpl_frameset *frames)
{
    return cpl_frameset_find_const(frames, RTEST_TAG_RAW);
}

/* Save a product with cpl_dfs_save_image (image != NULL) or
   cpl_dfs_save_propertylist (image == NULL).  qc may be NULL. */
static cpl_error_code rtest_save(cpl_frameset *allframes,
                                 const cpl_parameterlist *parlist,
                                 const cpl_frameset *used,
                                 const cpl_frame *inherit,
                                 const cpl_image *image, const char *recipe,
                                 const char *procatg,
                                 const cpl_propertylist *qc,
                                 const char *filename)
{
    cpl_propertylist *applist =
        qc != NULL ? cpl_propertylist_duplicate(qc) : cpl_propertylist_new();
    cpl_error_code code;

    cpl_propertylist_update_string(applist, CPL_DFS_PRO_CATG, procatg);
    if (inherit == NULL) {
        inherit = rtest_first_raw(used);
    }
    if (image != NULL) {
        code = cpl_dfs_save_image(allframes, NULL, parlist, used, inherit,
                                  image, CPL_TYPE_UNSPECIFIED, recipe, applist,
                                  NULL, RTEST_PIPE_ID, filename);
    }
    else {
        code = cpl_dfs_save_propertylist(allframes, NULL, parlist, used,
                                         inherit, recipe, applist, NULL,
                                         RTEST_PIPE_ID, filename);
    }
    cpl_propertylist_delete(applist);
    if (code) {
        return cpl_error_set_message(cpl_func, code,
                                     "could not save product %s (%s)",
                                     filename, procatg);
    }
    cpl_msg_info(cpl_func, "saved product %s (%s)", filename, procatg);
    return CPL_ERROR_NONE;
}

/* Save a 1x1 zero image product. */
static cpl_error_code rtest_save_dummy(cpl_frameset *frames,
                                       const cpl_parameterlist *parlist,
                                       const cpl_frameset *used,
                                       const char *recipe, const char *procatg,
                                       const cpl_propertylist *qc,
                                       const char *filename)
{
    cpl_image *image = cpl_image_new(1, 1, CPL_TYPE_FLOAT);
    cpl_error_code code = rtest_save(frames, parlist, used, NULL, image, recipe,
                                     procatg, qc, filename);
    cpl_image_delete(image);
    return code;
}

/* Write the product PARTIAL "partial.fits" (used before crashes/failures)
   and make sure the file is complete on disk. */
static void rtest_write_partial(cpl_frameset *frames,
                                const cpl_parameterlist *parlist,
                                const cpl_frameset *used, const char *recipe)
{
    rtest_save_dummy(frames, parlist, used, recipe, RTEST_TAG_PARTIAL, NULL,
                     RTEST_PARTIAL_FILE);
    /* close the FITS file cache, so partial.fits is complete on disk */
    cpl_fits_set_mode(CPL_FITS_RESTART_CACHING);
}

/*-----------------------------------------------------------------------------
                                 rtest_copy
 -----------------------------------------------------------------------------*/

static cpl_error_code rtest_copy_fill(cpl_parameterlist *list,
                                      const char *context)
{
    RTEST_ADD_VALUE(list, context, "per_frame", CPL_TYPE_BOOL,
                    "Also write one product per RAW frame "
                    "(rtest_copy_NNNN.fits).",
                    0);
    return CPL_ERROR_NONE;
}

static cpl_error_code rtest_copy_config(cpl_recipeconfig *config)
{
    cpl_recipeconfig_set_tag(config, RTEST_TAG_RAW, 1, -1);
    cpl_recipeconfig_set_input(config, RTEST_TAG_RAW, RTEST_TAG_CALIB, 0, 1);
    cpl_recipeconfig_set_output(config, RTEST_TAG_RAW, "PRODUCT");
    return cpl_error_get_code();
}

/* Load the primary image (plane 0 of a cube) of a frame, in its own pixel
   type (CPL has int, float and double images: BITPIX 8/16/32/64 load as
   int); a 4x4 float zero image if the primary HDU has NAXIS < 2. */
static cpl_image *rtest_copy_load(const cpl_frame *frame)
{
    const char *filename = cpl_frame_get_filename(frame);
    cpl_propertylist *header = cpl_propertylist_load(filename, 0);
    int naxis;
    cpl_image *image;

    if (header == NULL) {
        cpl_error_set_message(cpl_func, cpl_error_get_code(),
                              "could not read the primary header of %s",
                              filename);
        return NULL;
    }
    naxis = cpl_propertylist_has(header, "NAXIS")
                ? cpl_propertylist_get_int(header, "NAXIS")
                : 0;
    cpl_propertylist_delete(header);

    if (naxis < 2) {
        /* no data (or a 1D array, which cpl_image_load() cannot read) */
        cpl_msg_info(cpl_func, "%s: no primary image, using a 4x4 zero image",
                     filename);
        return cpl_image_new(4, 4, CPL_TYPE_FLOAT);
    }

    cpl_errorstate prestate = cpl_errorstate_get();
    image = cpl_image_load(filename, CPL_TYPE_UNSPECIFIED, 0, 0);
    if (image == NULL) {
        /* e.g. an unsupported BITPIX: try again as double */
        cpl_errorstate_set(prestate);
        image = cpl_image_load(filename, CPL_TYPE_DOUBLE, 0, 0);
    }
    if (image == NULL) {
        cpl_error_set_message(cpl_func, cpl_error_get_code(),
                              "could not load the primary image of %s",
                              filename);
    }
    return image;
}

static cpl_error_code rtest_copy(cpl_frameset *frames,
                                 const cpl_parameterlist *parlist)
{
    cpl_errorstate prestate = cpl_errorstate_get();
    const char *recipe = "rtest_copy";
    const int per_frame = rtest_get_bool(parlist, recipe, "per_frame");
    cpl_frameset *used;
    const cpl_frame *raw;
    const cpl_frame *calib;
    cpl_image *image;
    cpl_error_code code;

    if (!cpl_errorstate_is_equal(prestate)) {
        return cpl_error_set_where(cpl_func);
    }

    used = rtest_used_frames(frames);
    if (used == NULL) {
        return cpl_error_set_where(cpl_func);
    }
    raw = rtest_first_raw(used);
    calib = cpl_frameset_find_const(used, RTEST_TAG_CALIB);

    image = rtest_copy_load(raw);
    if (image == NULL) {
        cpl_frameset_delete(used);
        return cpl_error_set_where(cpl_func);
    }
    code = rtest_save(frames, parlist, used, raw, image, recipe, "PRODUCT",
                      NULL, "rtest_copy.fits");
    cpl_image_delete(image);

    if (!code && per_frame) {
        cpl_size n = cpl_frameset_get_size(used);
        int index = 0;

        for (cpl_size i = 0; i < n && !code; i++) {
            const cpl_frame *frame = cpl_frameset_get_position_const(used, i);
            cpl_frameset *fused;
            char *filename;

            if (cpl_frame_get_group(frame) != CPL_FRAME_GROUP_RAW) {
                continue;
            }
            image = rtest_copy_load(frame);
            if (image == NULL) {
                code = cpl_error_set_where(cpl_func);
                break;
            }
            fused = cpl_frameset_new();
            cpl_frameset_insert(fused, cpl_frame_duplicate(frame));
            if (calib != NULL) {
                cpl_frameset_insert(fused, cpl_frame_duplicate(calib));
            }
            filename = cpl_sprintf("rtest_copy_%04d.fits", index++);
            code = rtest_save(frames, parlist, fused, frame, image, recipe,
                              "PRODUCT", NULL, filename);
            cpl_free(filename);
            cpl_frameset_delete(fused);
            cpl_image_delete(image);
        }
    }
    cpl_frameset_delete(used);
    return code;
}

/*-----------------------------------------------------------------------------
                                 rtest_params
 -----------------------------------------------------------------------------*/

static cpl_error_code rtest_params_fill(cpl_parameterlist *list,
                                        const char *context)
{
    RTEST_ADD_VALUE(list, context, "bool_value", CPL_TYPE_BOOL,
                    "A boolean value.", 0);
    RTEST_ADD_VALUE(list, context, "int_value", CPL_TYPE_INT,
                    "An integer value.", 3);
    RTEST_ADD_RANGE(list, context, "int_range", CPL_TYPE_INT,
                    "An integer in the range 0..10.", 5, 0, 10);
    RTEST_ADD_VALUE(list, context, "float_value", CPL_TYPE_DOUBLE,
                    "A floating point value.", 0.5);
    RTEST_ADD_RANGE(list, context, "float_range", CPL_TYPE_DOUBLE,
                    "A floating point value in the range 0.0..10.0.", 1.5, 0.0,
                    10.0);
    RTEST_ADD_VALUE(list, context, "string_value", CPL_TYPE_STRING,
                    "A string value.", "hello");
    RTEST_ADD_VALUE(list, context, "string_null", CPL_TYPE_STRING,
                    "A string value without default (NULL).", NULL);
    RTEST_ADD_ENUM(list, context, "enum_string", CPL_TYPE_STRING,
                   "A string enumeration.", "median", 3, "mean", "median",
                   "sigclip");
    RTEST_ADD_ENUM(list, context, "enum_int", CPL_TYPE_INT,
                   "An integer enumeration.", 2, 3, 1, 2, 4);
    RTEST_ADD_ENUM(list, context, "stack.method", CPL_TYPE_STRING,
                   "Stacking method (dotted name).", "average", 2, "sum",
                   "average");
    RTEST_ADD_VALUE(list, context, "stack.sigma.low", CPL_TYPE_DOUBLE,
                    "Lower rejection threshold (dotted name).", 3.0);
    RTEST_ADD_VALUE(list, context, "stack.sigma.high", CPL_TYPE_DOUBLE,
                    "Upper rejection threshold (dotted name).", 3.0);
    return CPL_ERROR_NONE;
}

static cpl_error_code rtest_params_config(cpl_recipeconfig *config)
{
    cpl_recipeconfig_set_tag(config, RTEST_TAG_RAW, 1, -1);
    cpl_recipeconfig_set_output(config, RTEST_TAG_RAW, "PARAMS");
    return cpl_error_get_code();
}

/* "cplrun.rtest_params.stack.sigma.low" -> "ESO QC STACK SIGMA LOW" */
static char *rtest_params_qc_key(const char *name, const char *context)
{
    size_t clen = strlen(context);
    const char *rest = name;
    char *key;

    if (strncmp(name, context, clen) == 0 && name[clen] == '.') {
        rest = name + clen + 1;
    }
    key = cpl_sprintf("ESO QC %s", rest);
    for (char *c = key + 7; *c != '\0'; c++) {
        *c = *c == '.' ? ' ' : (char)toupper((unsigned char)*c);
    }
    return key;
}

static cpl_error_code rtest_params(cpl_frameset *frames,
                                   const cpl_parameterlist *parlist)
{
    cpl_errorstate prestate = cpl_errorstate_get();
    const char *recipe = "rtest_params";
    const char *context = RTEST_CONTEXT ".rtest_params";
    cpl_frameset *used = rtest_used_frames(frames);
    cpl_propertylist *qc;
    cpl_error_code code = CPL_ERROR_NONE;

    if (used == NULL) {
        return cpl_error_set_where(cpl_func);
    }
    qc = cpl_propertylist_new();

    for (const cpl_parameter *p = cpl_parameterlist_get_first_const(parlist);
         p != NULL; p = cpl_parameterlist_get_next_const(parlist)) {
        const char *name = cpl_parameter_get_name(p);
        char *key = rtest_params_qc_key(name, context);
        const char *comment = cpl_parameter_get_help(p);

        switch (cpl_parameter_get_type(p)) {
            case CPL_TYPE_BOOL:
                cpl_propertylist_append_bool(qc, key,
                                             cpl_parameter_get_bool(p));
                cpl_msg_info(cpl_func, "%s = %s", name,
                             cpl_parameter_get_bool(p) ? "true" : "false");
                break;
            case CPL_TYPE_INT:
                cpl_propertylist_append_int(qc, key, cpl_parameter_get_int(p));
                cpl_msg_info(cpl_func, "%s = %d", name,
                             cpl_parameter_get_int(p));
                break;
            case CPL_TYPE_DOUBLE:
                cpl_propertylist_append_double(qc, key,
                                               cpl_parameter_get_double(p));
                cpl_msg_info(cpl_func, "%s = %.17g", name,
                             cpl_parameter_get_double(p));
                break;
            case CPL_TYPE_STRING: {
                const char *s = cpl_parameter_get_string(p);
                cpl_propertylist_append_string(qc, key, s != NULL ? s : "");
                cpl_msg_info(cpl_func, "%s = '%s'", name, s != NULL ? s : "");
                break;
            }
            default:
                cpl_msg_warning(cpl_func, "%s: unsupported parameter type",
                                name);
                break;
        }
        if (cpl_propertylist_has(qc, key) && comment != NULL) {
            cpl_propertylist_set_comment(qc, key, comment);
        }
        cpl_free(key);
    }

    if (!cpl_errorstate_is_equal(prestate)) {
        code = cpl_error_set_where(cpl_func);
    }
    else {
        code = rtest_save(frames, parlist, used, NULL, NULL, recipe, "PARAMS",
                          qc, "rtest_params.fits");
    }
    cpl_frameset_delete(used);
    cpl_propertylist_delete(qc);
    return code;
}

/*-----------------------------------------------------------------------------
                                 rtest_crash
 -----------------------------------------------------------------------------*/

static cpl_error_code rtest_crash_fill(cpl_parameterlist *list,
                                       const char *context)
{
    RTEST_ADD_ENUM(list, context, "mode", CPL_TYPE_STRING,
                   "How to crash: segv (write through NULL), abort, "
                   "doublefree (free() twice), exit (exit(exit_code) inside "
                   "the recipe), none (succeed).",
                   "segv", 5, "segv", "abort", "doublefree", "exit", "none");
    RTEST_ADD_VALUE(list, context, "exit_code", CPL_TYPE_INT,
                    "Process exit code for mode=exit.", 3);
    return CPL_ERROR_NONE;
}

static cpl_error_code rtest_crash(cpl_frameset *frames,
                                  const cpl_parameterlist *parlist)
{
    cpl_errorstate prestate = cpl_errorstate_get();
    const char *recipe = "rtest_crash";
    const char *mode = rtest_get_string(parlist, recipe, "mode");
    const int exit_code = rtest_get_int(parlist, recipe, "exit_code");
    cpl_frameset *used;
    cpl_error_code code;

    if (!cpl_errorstate_is_equal(prestate)) {
        return cpl_error_set_where(cpl_func);
    }
    used = rtest_used_frames(frames);
    if (used == NULL) {
        return cpl_error_set_where(cpl_func);
    }

    if (strcmp(mode, "none") != 0) {
        rtest_write_partial(frames, parlist, used, recipe);
        cpl_msg_info(cpl_func, "about to crash: %s", mode);
        fflush(NULL);

        if (strcmp(mode, "segv") == 0) {
            int *volatile nowhere = NULL;
            *nowhere = 42;
            /* not reached; in case it is, die with the same signal */
            raise(SIGSEGV);
        }
        else if (strcmp(mode, "abort") == 0) {
            abort();
        }
        else if (strcmp(mode, "doublefree") == 0) {
            char *volatile mem = malloc(32);
            if (mem != NULL) {
                memset(mem, 1, 32);
            }
            free(mem);
            free(mem); /* glibc: "free(): double free detected" -> abort */
            abort();   /* not reached */
        }
        else if (strcmp(mode, "exit") == 0) {
            exit(exit_code);
        }
        cpl_frameset_delete(used);
        return cpl_error_set_message(cpl_func, CPL_ERROR_ILLEGAL_INPUT,
                                     "unknown crash mode %s", mode);
    }

    cpl_msg_info(cpl_func, "not crashing (mode none)");
    code = rtest_save_dummy(frames, parlist, used, recipe, "CRASH_PRODUCT",
                            NULL, "rtest_crash.fits");
    cpl_frameset_delete(used);
    return code;
}

/*-----------------------------------------------------------------------------
                                 rtest_hang
 -----------------------------------------------------------------------------*/

static cpl_error_code rtest_hang_fill(cpl_parameterlist *list,
                                      const char *context)
{
    RTEST_ADD_VALUE(list, context, "seconds", CPL_TYPE_DOUBLE,
                    "How long to sleep [s].", 3600.0);
    RTEST_ADD_VALUE(list, context, "fork_child", CPL_TYPE_BOOL,
                    "First fork a child process that sleeps forever (in the "
                    "same process group).",
                    0);
    return CPL_ERROR_NONE;
}

static cpl_error_code rtest_hang(cpl_frameset *frames,
                                 const cpl_parameterlist *parlist)
{
    cpl_errorstate prestate = cpl_errorstate_get();
    const char *recipe = "rtest_hang";
    const double seconds = rtest_get_double(parlist, recipe, "seconds");
    const int fork_child = rtest_get_bool(parlist, recipe, "fork_child");
    pid_t child = -1;
    cpl_frameset *used;
    cpl_error_code code;

    if (!cpl_errorstate_is_equal(prestate)) {
        return cpl_error_set_where(cpl_func);
    }
    used = rtest_used_frames(frames);
    if (used == NULL) {
        return cpl_error_set_where(cpl_func);
    }

    cpl_msg_info(cpl_func, "hanging");
    fflush(NULL);

    if (fork_child) {
        child = fork();
        if (child == 0) {
            /* the child: sleep forever, die on any terminating signal */
            signal(SIGTERM, SIG_DFL);
            signal(SIGINT, SIG_DFL);
            signal(SIGHUP, SIG_DFL);
            for (;;) {
                sleep(60);
            }
        }
        if (child < 0) {
            cpl_frameset_delete(used);
            return cpl_error_set_message(cpl_func, CPL_ERROR_UNSPECIFIED,
                                         "fork() failed: %s", strerror(errno));
        }
        cpl_msg_info(cpl_func, "forked child %ld", (long)child);
        {
            FILE *pidfile = fopen("rtest_hang_child.pid", "w");
            if (pidfile != NULL) {
                fprintf(pidfile, "%ld\n", (long)child);
                fclose(pidfile);
            }
        }
        fflush(NULL);
    }

    rtest_sleep(seconds);

    if (child > 0) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
    }
    cpl_msg_info(cpl_func, "done hanging after %g s", seconds);

    code = rtest_save_dummy(frames, parlist, used, recipe, "HANG_PRODUCT",
                            NULL, "rtest_hang.fits");
    cpl_frameset_delete(used);
    return code;
}

/*-----------------------------------------------------------------------------
                                 rtest_error
 -----------------------------------------------------------------------------*/

static cpl_error_code rtest_error_fill(cpl_parameterlist *list,
                                       const char *context)
{
    RTEST_ADD_VALUE(list, context, "fail", CPL_TYPE_BOOL,
                    "Fail with a chained CPL error.", 1);
    return CPL_ERROR_NONE;
}

static cpl_error_code rtest_error_inner(void)
{
    return cpl_error_set_message(cpl_func, CPL_ERROR_ILLEGAL_INPUT,
                                 "inner failure: %s", "bad value");
}

static cpl_error_code rtest_error_outer(void)
{
    if (rtest_error_inner()) {
        return cpl_error_set_message(cpl_func, CPL_ERROR_DATA_NOT_FOUND,
                                     "outer failure");
    }
    return CPL_ERROR_NONE;
}

static cpl_error_code rtest_error(cpl_frameset *frames,
                                  const cpl_parameterlist *parlist)
{
    cpl_errorstate prestate = cpl_errorstate_get();
    const char *recipe = "rtest_error";
    const int fail = rtest_get_bool(parlist, recipe, "fail");
    cpl_frameset *used;
    cpl_error_code code;

    if (!cpl_errorstate_is_equal(prestate)) {
        return cpl_error_set_where(cpl_func);
    }
    used = rtest_used_frames(frames);
    if (used == NULL) {
        return cpl_error_set_where(cpl_func);
    }

    if (fail) {
        rtest_write_partial(frames, parlist, used, recipe);
        cpl_frameset_delete(used);
        code = rtest_error_outer();
        cpl_msg_error(cpl_func, "rtest_error failed: %s",
                      cpl_error_get_message());
        return code;
    }

    code = rtest_save_dummy(frames, parlist, used, recipe, "ERROR_PRODUCT",
                            NULL, "rtest_error.fits");
    cpl_frameset_delete(used);
    return code;
}

/*-----------------------------------------------------------------------------
                                 rtest_leak
 -----------------------------------------------------------------------------*/

static cpl_error_code rtest_leak_fill(cpl_parameterlist *list,
                                      const char *context)
{
    RTEST_ADD_VALUE(list, context, "kbytes", CPL_TYPE_INT,
                    "How many KiB to allocate with cpl_malloc() and never "
                    "free.",
                    1024);
    return CPL_ERROR_NONE;
}

static cpl_error_code rtest_leak(cpl_frameset *frames,
                                 const cpl_parameterlist *parlist)
{
    cpl_errorstate prestate = cpl_errorstate_get();
    const char *recipe = "rtest_leak";
    const int kbytes = rtest_get_int(parlist, recipe, "kbytes");
    cpl_frameset *used;
    cpl_image *leaked_image;
    cpl_error_code code;

    if (!cpl_errorstate_is_equal(prestate)) {
        return cpl_error_set_where(cpl_func);
    }
    used = rtest_used_frames(frames);
    if (used == NULL) {
        return cpl_error_set_where(cpl_func);
    }
    if (kbytes > 0) {
        size_t size = (size_t)kbytes * 1024;
        char *leaked = cpl_malloc(size);
        memset(leaked, 0x5a, size);
        /* keep the compiler from dropping the (never read) memset */
        __asm__ __volatile__("" : : "r"(leaked) : "memory");
        cpl_msg_info(cpl_func, "leaked %d KiB", kbytes);
    }
    leaked_image = cpl_image_new(64, 64, CPL_TYPE_DOUBLE);
    __asm__ __volatile__("" : : "r"(leaked_image) : "memory");
    cpl_msg_info(cpl_func, "leaked a 64x64 cpl_image");

    code = rtest_save_dummy(frames, parlist, used, recipe, "LEAK_PRODUCT",
                            NULL, "rtest_leak.fits");
    cpl_frameset_delete(used);
    return code;
}

/*-----------------------------------------------------------------------------
                                 rtest_biglog
 -----------------------------------------------------------------------------*/

static cpl_error_code rtest_biglog_fill(cpl_parameterlist *list,
                                        const char *context)
{
    RTEST_ADD_VALUE(list, context, "lines", CPL_TYPE_INT,
                    "Number of 100 character cpl_msg_info() lines.", 5000);
    return CPL_ERROR_NONE;
}

static cpl_error_code rtest_biglog(cpl_frameset *frames,
                                   const cpl_parameterlist *parlist)
{
    cpl_errorstate prestate = cpl_errorstate_get();
    const char *recipe = "rtest_biglog";
    const int lines = rtest_get_int(parlist, recipe, "lines");
    /* "line %06d " is 12 characters, pad to 100 */
    char padding[89];
    cpl_frameset *used;
    cpl_error_code code;

    if (!cpl_errorstate_is_equal(prestate)) {
        return cpl_error_set_where(cpl_func);
    }
    used = rtest_used_frames(frames);
    if (used == NULL) {
        return cpl_error_set_where(cpl_func);
    }
    for (size_t i = 0; i < sizeof padding - 1; i++) {
        padding[i] = (char)('a' + i % 26);
    }
    padding[sizeof padding - 1] = '\0';

    for (int i = 0; i < lines; i++) {
        cpl_msg_info(cpl_func, "line %06d %s", i, padding);
    }
    cpl_msg_warning(cpl_func, "biglog warning");
    cpl_msg_debug(cpl_func, "biglog debug");
    for (int i = 0; i < 100; i++) {
        printf("stdout line %d\n", i);
    }
    for (int i = 0; i < 100; i++) {
        fprintf(stderr, "stderr line %d\n", i);
    }
    fflush(stdout);
    fflush(stderr);

    code = rtest_save_dummy(frames, parlist, used, recipe, "BIGLOG_PRODUCT",
                            NULL, "rtest_biglog.fits");
    cpl_frameset_delete(used);
    return code;
}

/*-----------------------------------------------------------------------------
                                  rtest_omp
 -----------------------------------------------------------------------------*/

static cpl_error_code rtest_omp(cpl_frameset *frames,
                                const cpl_parameterlist *parlist)
{
    const char *recipe = "rtest_omp";
    const char *env = getenv("CPLRUN_TEST_VAR");
    const int max_threads = omp_get_max_threads();
    int team = 0;
    cpl_propertylist *qc;
    cpl_frameset *used = rtest_used_frames(frames);
    cpl_error_code code;

    if (used == NULL) {
        return cpl_error_set_where(cpl_func);
    }

#pragma omp parallel
    {
#pragma omp single
        team = omp_get_num_threads();
    }

    if (env == NULL) {
        env = "";
    }
    cpl_msg_info(cpl_func, "OpenMP max threads: %d", max_threads);
    cpl_msg_info(cpl_func, "OpenMP team size: %d", team);
    cpl_msg_info(cpl_func, "CPLRUN_TEST_VAR: '%s'", env);

    qc = cpl_propertylist_new();
    cpl_propertylist_append_int(qc, "ESO QC OMP TEAM", team);
    cpl_propertylist_set_comment(qc, "ESO QC OMP TEAM",
                                 "omp_get_num_threads() in a parallel region");
    cpl_propertylist_append_int(qc, "ESO QC OMP MAX", max_threads);
    cpl_propertylist_set_comment(qc, "ESO QC OMP MAX", "omp_get_max_threads()");
    cpl_propertylist_append_string(qc, "ESO QC ENV VAR", env);
    cpl_propertylist_set_comment(qc, "ESO QC ENV VAR", "$CPLRUN_TEST_VAR");

    code = rtest_save_dummy(frames, parlist, used, recipe, "OMP_PRODUCT", qc,
                            "rtest_omp.fits");
    cpl_frameset_delete(used);
    cpl_propertylist_delete(qc);
    return code;
}

/*-----------------------------------------------------------------------------
                             The recipe table
 -----------------------------------------------------------------------------*/

static const rtest_definition rtest_recipes[] = {
    { "rtest_copy", "Copy the first RAW image to a product",
      "Trivial recipe, e.g. for benchmarks.\n"
      "Input frames:\n"
      "  RAW    (1..n)  FITS files; the primary image of the first one is "
      "copied\n"
      "  CALIB  (0..1)  optional calibration, recorded in the product header\n"
      "Products:\n"
      "  PRODUCT  rtest_copy.fits       copy of the first RAW primary image\n"
      "                                 (4x4 zero image if it has none)\n"
      "  PRODUCT  rtest_copy_NNNN.fits  one per RAW frame if per_frame=true\n"
      "Parameters:\n"
      "  per_frame  (bool, false)  write one product per RAW frame\n",
      rtest_copy_fill, rtest_copy_config, rtest_copy },
    { "rtest_params", "Echo all parameters as QC keywords",
      "Has parameters of every type (bool, int, double, string) and class\n"
      "(value, range, enum), including dotted names, and writes the values\n"
      "received into the primary header of the product as\n"
      "'ESO QC <NAME>' (dots replaced by spaces, upper case).\n"
      "Input frames:\n"
      "  RAW  (1..n)  any files, only recorded in the product header\n"
      "Products:\n"
      "  PARAMS  rtest_params.fits  header only\n",
      rtest_params_fill, rtest_params_config, rtest_params },
    { "rtest_crash", "Crash in various ways",
      "Writes the product PARTIAL partial.fits, logs 'about to crash: MODE'\n"
      "and then crashes as selected by the parameter 'mode':\n"
      "  segv        write through a NULL pointer (SIGSEGV)\n"
      "  abort       call abort() (SIGABRT)\n"
      "  doublefree  free() a pointer twice (glibc aborts, SIGABRT)\n"
      "  exit        exit(exit_code) from inside the recipe\n"
      "  none        do not crash, write CRASH_PRODUCT rtest_crash.fits\n"
      "Input frames:\n"
      "  RAW  (1..n)  any files, only recorded in the product headers\n",
      rtest_crash_fill, NULL, rtest_crash },
    { "rtest_hang", "Sleep for a long time",
      "Logs 'hanging' and sleeps 'seconds' seconds (in short steps).\n"
      "With fork_child=true, first forks a child process (same process\n"
      "group) that sleeps forever; its pid is logged ('forked child PID')\n"
      "and written to rtest_hang_child.pid.  If the sleep ends, the child\n"
      "is killed and HANG_PRODUCT rtest_hang.fits is written.\n"
      "Input frames:\n"
      "  RAW  (1..n)  any files, only recorded in the product headers\n",
      rtest_hang_fill, NULL, rtest_hang },
    { "rtest_error", "Fail with a chained CPL error",
      "With fail=true (default): writes the product PARTIAL partial.fits,\n"
      "sets the CPL error 'inner failure: bad value' (CPL_ERROR_ILLEGAL_INPUT)\n"
      "in rtest_error_inner(), then 'outer failure' "
      "(CPL_ERROR_DATA_NOT_FOUND)\n"
      "in rtest_error_outer(), logs an error message and returns the error\n"
      "code.  With fail=false: writes ERROR_PRODUCT rtest_error.fits.\n"
      "Input frames:\n"
      "  RAW  (1..n)  any files, only recorded in the product headers\n",
      rtest_error_fill, NULL, rtest_error },
    { "rtest_leak", "Leak memory",
      "Allocates 'kbytes' KiB with cpl_malloc(), fills it and never frees\n"
      "it; also leaks a 64x64 double cpl_image.  Writes LEAK_PRODUCT\n"
      "rtest_leak.fits.\n"
      "Input frames:\n"
      "  RAW  (1..n)  any files, only recorded in the product headers\n",
      rtest_leak_fill, NULL, rtest_leak },
    { "rtest_biglog", "Produce a lot of output",
      "Logs 'lines' cpl_msg_info() lines of 100 characters\n"
      "('line NNNNNN abc...'), a warning 'biglog warning', a debug message\n"
      "'biglog debug', then prints 100 lines 'stdout line N' to stdout and\n"
      "100 lines 'stderr line N' to stderr.  Writes BIGLOG_PRODUCT\n"
      "rtest_biglog.fits.\n"
      "Input frames:\n"
      "  RAW  (1..n)  any files, only recorded in the product headers\n",
      rtest_biglog_fill, NULL, rtest_biglog },
    { "rtest_omp", "Report OpenMP threads and an environment variable",
      "Records omp_get_max_threads(), the team size omp_get_num_threads()\n"
      "inside an OpenMP parallel region, and $CPLRUN_TEST_VAR ('' if unset)\n"
      "and writes them as ESO QC OMP MAX, ESO QC OMP TEAM and ESO QC ENV VAR\n"
      "into OMP_PRODUCT rtest_omp.fits.\n"
      "Input frames:\n"
      "  RAW  (1..n)  any files, only recorded in the product headers\n",
      NULL, NULL, rtest_omp },
};

#define RTEST_NRECIPES (sizeof rtest_recipes / sizeof rtest_recipes[0])

static const rtest_definition *rtest_lookup(const char *name)
{
    if (name != NULL) {
        for (size_t i = 0; i < RTEST_NRECIPES; i++) {
            if (strcmp(rtest_recipes[i].name, name) == 0) {
                return &rtest_recipes[i];
            }
        }
    }
    cpl_error_set_message(cpl_func, CPL_ERROR_ILLEGAL_INPUT,
                          "unknown recipe %s", name != NULL ? name : "(null)");
    return NULL;
}

/*-----------------------------------------------------------------------------
                          Plugin interface callbacks
 -----------------------------------------------------------------------------*/

static const rtest_definition *rtest_check_plugin(cpl_plugin *plugin)
{
    if (plugin == NULL) {
        cpl_error_set_message(cpl_func, CPL_ERROR_NULL_INPUT, "NULL plugin");
        return NULL;
    }
    if (!(cpl_plugin_get_type(plugin) & CPL_PLUGIN_TYPE_RECIPE)) {
        cpl_error_set_message(cpl_func, CPL_ERROR_TYPE_MISMATCH,
                              "plugin is not a recipe");
        return NULL;
    }
    return rtest_lookup(cpl_plugin_get_name(plugin));
}

static int rtest_create(cpl_plugin *plugin)
{
    cpl_errorstate prestate = cpl_errorstate_get();
    const rtest_definition *def = rtest_check_plugin(plugin);
    cpl_recipe *recipe = (cpl_recipe *)plugin;

    if (def == NULL) {
        return (int)cpl_error_set_where(cpl_func);
    }

    recipe->parameters = cpl_parameterlist_new();
    if (def->fill != NULL) {
        char *context = cpl_sprintf("%s.%s", RTEST_CONTEXT, def->name);
        def->fill(recipe->parameters, context);
        cpl_free(context);
    }
    if (def->config != NULL &&
        cpl_plugin_get_type(plugin) == CPL_PLUGIN_TYPE_RECIPE_V2) {
        cpl_recipe2 *recipe2 = (cpl_recipe2 *)plugin;
        recipe2->config = cpl_recipeconfig_new();
        def->config(recipe2->config);
    }
    if (!cpl_errorstate_is_equal(prestate)) {
        return (int)cpl_error_set_where(cpl_func);
    }
    return 0;
}

static int rtest_exec(cpl_plugin *plugin)
{
    const rtest_definition *def = rtest_check_plugin(plugin);
    cpl_recipe *recipe = (cpl_recipe *)plugin;
    cpl_errorstate prestate;
    cpl_error_code code;

    if (def == NULL) {
        return (int)cpl_error_set_where(cpl_func);
    }
    if (recipe->frames == NULL) {
        return (int)cpl_error_set_message(cpl_func, CPL_ERROR_NULL_INPUT,
                                          "no frameset given");
    }
    if (recipe->parameters == NULL) {
        return (int)cpl_error_set_message(cpl_func, CPL_ERROR_NULL_INPUT,
                                          "no parameter list given");
    }

    prestate = cpl_errorstate_get();
    code = def->run(recipe->frames, recipe->parameters);
    if (code == CPL_ERROR_NONE && !cpl_errorstate_is_equal(prestate)) {
        code = cpl_error_get_code();
    }
    if (code != CPL_ERROR_NONE) {
        /* esorex does not report the CPL error state: log the whole chain
           (one cpl_msg_error line per error) */
        cpl_errorstate_dump(prestate, CPL_FALSE, cpl_errorstate_dump_one);
    }
    return (int)code;
}

static int rtest_destroy(cpl_plugin *plugin)
{
    cpl_recipe *recipe = (cpl_recipe *)plugin;

    if (plugin == NULL) {
        return (int)cpl_error_set_message(cpl_func, CPL_ERROR_NULL_INPUT,
                                          "NULL plugin");
    }
    if (!(cpl_plugin_get_type(plugin) & CPL_PLUGIN_TYPE_RECIPE)) {
        return (int)cpl_error_set_message(cpl_func, CPL_ERROR_TYPE_MISMATCH,
                                          "plugin is not a recipe");
    }
    cpl_parameterlist_delete(recipe->parameters);
    recipe->parameters = NULL;
    if (cpl_plugin_get_type(plugin) == CPL_PLUGIN_TYPE_RECIPE_V2) {
        cpl_recipe2 *recipe2 = (cpl_recipe2 *)plugin;
        cpl_recipeconfig_delete(recipe2->config);
        recipe2->config = NULL;
    }
    return 0;
}

/*-----------------------------------------------------------------------------
                      Frame configuration for python-cpl
 -----------------------------------------------------------------------------*/

/* The frame configuration of the cpl_recipe2 recipes is in recipe2->config
   (created by the create callback, deleted by destroy).  python-cpl
   (<= 0.7.4, Debian's python3-cpl) never reads cpl_recipe2::config: it only
   looks up a function with this name in the recipe library (the MUSE
   pipeline provides it).  Exporting it makes the configuration visible
   there too.  Returns a new object which the caller owns (python-cpl never
   deletes it); NULL for recipes without configuration. */
cpl_recipeconfig *muse_processing_get_recipeconfig(cpl_recipe *recipe);

cpl_recipeconfig *muse_processing_get_recipeconfig(cpl_recipe *recipe)
{
    cpl_errorstate prestate = cpl_errorstate_get();
    const rtest_definition *def =
        recipe != NULL ? rtest_lookup(cpl_plugin_get_name(&recipe->interface))
                       : NULL;
    cpl_recipeconfig *config;

    if (def == NULL || def->config == NULL) {
        cpl_errorstate_set(prestate);
        return NULL;
    }
    config = cpl_recipeconfig_new();
    def->config(config);
    return config;
}

/*-----------------------------------------------------------------------------
                             cpl_plugin_get_info
 -----------------------------------------------------------------------------*/

int cpl_plugin_get_info(cpl_pluginlist *list)
{
    if (list == NULL) {
        return 1;
    }
    if (cpl_version_get_major() != (CPL_VERSION_CODE >> 16)) {
        cpl_msg_warning(cpl_func,
                        "cplrun test recipes were built with CPL %s, running "
                        "with CPL %s",
                        CPL_VERSION_STRING, cpl_version_get_version());
    }

    for (size_t i = 0; i < RTEST_NRECIPES; i++) {
        const rtest_definition *def = &rtest_recipes[i];
        const int v2 = def->config != NULL;
        cpl_plugin *plugin =
            v2 ? (cpl_plugin *)cpl_calloc(1, sizeof(cpl_recipe2))
               : (cpl_plugin *)cpl_calloc(1, sizeof(cpl_recipe));

        if (cpl_plugin_init(plugin, CPL_PLUGIN_API, RTEST_VERSION,
                            v2 ? CPL_PLUGIN_TYPE_RECIPE_V2
                               : CPL_PLUGIN_TYPE_RECIPE,
                            def->name, def->synopsis, def->description,
                            RTEST_AUTHOR, RTEST_EMAIL, RTEST_COPYRIGHT,
                            rtest_create, rtest_exec, rtest_destroy) ||
            cpl_pluginlist_append(list, plugin)) {
            cpl_plugin_delete(plugin);
            return 1;
        }
    }
    return 0;
}
