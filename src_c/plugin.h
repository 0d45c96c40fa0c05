/* Loading recipe plugin libraries (the .so files of a pipeline). */
#ifndef CPLRUN_PLUGIN_H
#define CPLRUN_PLUGIN_H

#include <stddef.h>
#include <sys/stat.h>
#include <cpl.h>

typedef struct loaded_plugin {
    char *path;
    void *handle;
    cpl_pluginlist *recipes;
    struct stat file;       /* the file as it was when loaded */
    struct loaded_plugin *next;
} loaded_plugin;

/* dlopen()s path and collects its recipes.  On failure returns NULL and
 * writes the reason into err. */
loaded_plugin *plugin_load(const char *path, char *err, size_t err_len);

/* A loaded library by path, loading it on first use (the server keeps its
 * libraries for its whole life: forked runs then start without loading).
 * A library replaced on disk since (rebuilt, upgraded) is loaded anew. */
loaded_plugin *plugin_cache_get(const char *path, char *err, size_t err_len);

/* Changes whenever plugin_cache_get() loads a library. */
unsigned long plugin_cache_generation(void);

/* In a forked run: frees the plugin lists of every cached library (made
 * by the server before the fork, they would count as allocated memory for
 * CPL's memory check) and registers lib's recipes afresh.  The run owns
 * the new list and frees it with cpl_pluginlist_delete(). */
cpl_pluginlist *plugin_fresh_list(loaded_plugin *lib);

/* The recipe of that name, or NULL. */
cpl_plugin *plugin_find_recipe(loaded_plugin *lib, const char *name);

/* True for the plugin types that are recipes (cpl_recipe or cpl_recipe2). */
int plugin_is_recipe(const cpl_plugin *p);

/* Makes fd 1 point to /dev/null and returns a new descriptor for the
 * original stdout: libraries that print must not corrupt what the runner
 * sends to Python. */
int protect_stdout(void);

#endif
