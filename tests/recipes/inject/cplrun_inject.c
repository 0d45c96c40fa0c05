/*
 * cplrun_inject.c -- makes real pipeline recipes fail on demand, for the
 * fault tests: preloaded (LD_PRELOAD) into a recipe server, it stands in
 * for the CPL functions that write FITS files, and when one is first
 * called in a recipe process, does what $CPLRUN_INJECT says:
 *
 *   segv   write through a NULL pointer (SIGSEGV)
 *   abort  abort() (SIGABRT)
 *   exit   exit(7) from inside the recipe
 *   hang   fork a child (same process group) that sleeps forever, write
 *          its pid to cplrun_inject_child.pid, and sleep forever
 *
 * Unset or empty: the real function, nothing else.  Built by ../build.py
 * (build_inject) into cplrun_inject.so.
 */
#define _GNU_SOURCE

#include <cpl.h>
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void inject(void)
{
    const char *mode = getenv("CPLRUN_INJECT");
    if (mode == NULL || mode[0] == '\0') {
        return;
    }
    fprintf(stderr, "cplrun_inject: %s\n", mode);
    fflush(NULL);
    if (strcmp(mode, "segv") == 0) {
        volatile int *volatile nowhere = NULL;
        *nowhere = 1;
        raise(SIGSEGV);     /* should the store be optimised away */
    }
    else if (strcmp(mode, "abort") == 0) {
        abort();
    }
    else if (strcmp(mode, "exit") == 0) {
        exit(7);
    }
    else if (strcmp(mode, "hang") == 0) {
        pid_t child = fork();
        if (child == 0) {
            for (;;) {
                pause();
            }
        }
        FILE *f = fopen("cplrun_inject_child.pid", "w");
        if (f != NULL) {
            fprintf(f, "%ld\n", (long)child);
            fclose(f);
        }
        for (;;) {
            sleep(1);
        }
    }
}

#define REAL(name) \
    static __typeof__(name) *real_; \
    if (real_ == NULL) real_ = (__typeof__(name) *)dlsym(RTLD_NEXT, #name)

cpl_error_code cpl_image_save(const cpl_image *self, const char *filename,
                              cpl_type type, const cpl_propertylist *pl,
                              unsigned mode)
{
    inject();
    REAL(cpl_image_save);
    return real_(self, filename, type, pl, mode);
}

cpl_error_code cpl_imagelist_save(const cpl_imagelist *self,
                                  const char *filename, cpl_type type,
                                  const cpl_propertylist *pl, unsigned mode)
{
    inject();
    REAL(cpl_imagelist_save);
    return real_(self, filename, type, pl, mode);
}

cpl_error_code cpl_propertylist_save(const cpl_propertylist *self,
                                     const char *filename, unsigned int mode)
{
    inject();
    REAL(cpl_propertylist_save);
    return real_(self, filename, mode);
}

cpl_error_code cpl_table_save(const cpl_table *table,
                              const cpl_propertylist *pheader,
                              const cpl_propertylist *header,
                              const char *filename, unsigned mode)
{
    inject();
    REAL(cpl_table_save);
    return real_(table, pheader, header, filename, mode);
}
