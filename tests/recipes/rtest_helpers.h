/* Helpers shared by the test recipe libraries (cplrun_test_recipes.c,
 * faults/cplrun_fault_recipes.c): declaring parameters the way the ESO
 * pipelines do, reading them back, sleeping.  Each library includes it
 * after defining RTEST_CONTEXT, the context of its parameter names. */
#ifndef CPLRUN_RTEST_HELPERS_H
#define CPLRUN_RTEST_HELPERS_H

#include <string.h>
#include <time.h>

#include <cpl.h>

/* Append p to list.  As in the ESO pipelines (e.g. MUSE), the CLI and CFG
   aliases are the name without the "cplrun.<recipe>." context, and the ENV
   alias is the full parameter name (which is also CPL's default). */
static inline cpl_error_code
rtest_param_append(cpl_parameterlist *list, cpl_parameter *p, const char *alias)
{
    if (p == NULL) {
        return cpl_error_set_where(cpl_func);
    }
    cpl_parameter_set_alias(p, CPL_PARAMETER_MODE_CLI, alias);
    cpl_parameter_set_alias(p, CPL_PARAMETER_MODE_ENV,
                            cpl_parameter_get_name(p));
    cpl_parameter_set_alias(p, CPL_PARAMETER_MODE_CFG, alias);
    cpl_parameterlist_append(list, p);
    return cpl_error_get_code();
}

/* Full parameter name "<context>.<alias>"; to be freed with cpl_free(). */
static inline char *rtest_param_name(const char *context, const char *alias)
{
    return cpl_sprintf("%s.%s", context, alias);
}

#define RTEST_ADD_VALUE(LIST, CONTEXT, ALIAS, TYPE, DESCR, DEFAULT)            \
    do {                                                                       \
        char *name_ = rtest_param_name(CONTEXT, ALIAS);                        \
        cpl_parameter *p_ = cpl_parameter_new_value(name_, TYPE, DESCR,        \
                                                    CONTEXT, DEFAULT);         \
        cpl_free(name_);                                                       \
        if (rtest_param_append(LIST, p_, ALIAS))                               \
            return cpl_error_set_where(cpl_func);                              \
    } while (0)

#define RTEST_ADD_RANGE(LIST, CONTEXT, ALIAS, TYPE, DESCR, DEFAULT, MIN, MAX)  \
    do {                                                                       \
        char *name_ = rtest_param_name(CONTEXT, ALIAS);                        \
        cpl_parameter *p_ = cpl_parameter_new_range(name_, TYPE, DESCR,        \
                                                    CONTEXT, DEFAULT, MIN,     \
                                                    MAX);                      \
        cpl_free(name_);                                                       \
        if (rtest_param_append(LIST, p_, ALIAS))                               \
            return cpl_error_set_where(cpl_func);                              \
    } while (0)

#define RTEST_ADD_ENUM(LIST, CONTEXT, ALIAS, TYPE, DESCR, DEFAULT, N, ...)     \
    do {                                                                       \
        char *name_ = rtest_param_name(CONTEXT, ALIAS);                        \
        cpl_parameter *p_ = cpl_parameter_new_enum(name_, TYPE, DESCR,         \
                                                   CONTEXT, DEFAULT, N,        \
                                                   __VA_ARGS__);               \
        cpl_free(name_);                                                       \
        if (rtest_param_append(LIST, p_, ALIAS))                               \
            return cpl_error_set_where(cpl_func);                              \
    } while (0)

/* Find the parameter "cplrun.<recipe>.<alias>"; sets an error if missing. */
static inline const cpl_parameter *rtest_param_find(const cpl_parameterlist *parlist,
                                             const char *recipe,
                                             const char *alias)
{
    char *context = cpl_sprintf("%s.%s", RTEST_CONTEXT, recipe);
    char *name = rtest_param_name(context, alias);
    const cpl_parameter *p = cpl_parameterlist_find_const(parlist, name);
    if (p == NULL) {
        cpl_error_set_message(cpl_func, CPL_ERROR_DATA_NOT_FOUND,
                              "parameter %s not found", name);
    }
    cpl_free(name);
    cpl_free(context);
    return p;
}

static inline int rtest_get_bool(const cpl_parameterlist *parlist, const char *recipe,
                          const char *alias)
{
    const cpl_parameter *p = rtest_param_find(parlist, recipe, alias);
    return p != NULL ? cpl_parameter_get_bool(p) : 0;
}

static inline int rtest_get_int(const cpl_parameterlist *parlist, const char *recipe,
                         const char *alias)
{
    const cpl_parameter *p = rtest_param_find(parlist, recipe, alias);
    return p != NULL ? cpl_parameter_get_int(p) : 0;
}

static inline double rtest_get_double(const cpl_parameterlist *parlist,
                               const char *recipe, const char *alias)
{
    const cpl_parameter *p = rtest_param_find(parlist, recipe, alias);
    return p != NULL ? cpl_parameter_get_double(p) : 0.0;
}

static inline const char *rtest_get_string(const cpl_parameterlist *parlist,
                                    const char *recipe, const char *alias)
{
    const cpl_parameter *p = rtest_param_find(parlist, recipe, alias);
    const char *value = p != NULL ? cpl_parameter_get_string(p) : NULL;
    return value != NULL ? value : "";
}

static inline double rtest_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline void rtest_sleep(double seconds)
{
    const double end = rtest_now() + seconds;
    double left;

    while ((left = end - rtest_now()) > 0.0) {
        struct timespec ts;
        if (left > 0.1) {
            left = 0.1;
        }
        ts.tv_sec = (time_t)left;
        ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
        nanosleep(&ts, NULL);
    }
}

#endif
