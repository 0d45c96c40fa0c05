#include "plugin.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static loaded_plugin *cache = NULL;
/* Counts the loads into the cache: a process forked earlier lacks what
 * was loaded since. */
static unsigned long cache_generation = 0;

int plugin_is_recipe(const cpl_plugin *p)
{
    unsigned long type = cpl_plugin_get_type(p);
    return type == CPL_PLUGIN_TYPE_RECIPE || type == CPL_PLUGIN_TYPE_RECIPE_V2;
}

loaded_plugin *plugin_load(const char *path, char *err, size_t err_len)
{
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        snprintf(err, err_len, "cannot load %s: %s", path, dlerror());
        return NULL;
    }
    int (*get_info)(cpl_pluginlist *) =
        (int (*)(cpl_pluginlist *))dlsym(handle, "cpl_plugin_get_info");
    if (get_info == NULL) {
        snprintf(err, err_len, "%s is not a CPL plugin library "
                 "(no cpl_plugin_get_info)", path);
        dlclose(handle);
        return NULL;
    }
    cpl_pluginlist *list = cpl_pluginlist_new();
    cpl_errorstate state = cpl_errorstate_get();
    get_info(list);
    cpl_errorstate_set(state);
    loaded_plugin *lib = calloc(1, sizeof *lib);
    lib->path = strdup(path);
    lib->handle = handle;
    lib->recipes = list;
    return lib;
}

static int same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino
           && a->st_size == b->st_size
           && a->st_mtim.tv_sec == b->st_mtim.tv_sec
           && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* The new file behind a path whose old version is loaded.  dlopen() would
 * hand back the old one for the same name, so the new one is opened under
 * a name of its own, /proc/self/fd/N; the descriptor stays open so that N
 * stays unique.  The old version is not unloaded (the library may have
 * left pointers to itself in CPL or elsewhere), only forgotten. */
static loaded_plugin *plugin_reload(const char *path, char *err,
                                    size_t err_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        char name[64];
        snprintf(name, sizeof name, "/proc/self/fd/%d", fd);
        loaded_plugin *lib = plugin_load(name, err, err_len);
        if (lib != NULL) {
            free(lib->path);
            lib->path = strdup(path);
            return lib;
        }
        close(fd);
    }
    return plugin_load(path, err, err_len);
}

loaded_plugin *plugin_cache_get(const char *path, char *err, size_t err_len)
{
    struct stat now;
    int known = stat(path, &now) == 0;
    int replaced = 0;
    for (loaded_plugin **link = &cache; *link != NULL;
         link = &(*link)->next) {
        loaded_plugin *lib = *link;
        if (strcmp(lib->path, path) != 0) {
            continue;
        }
        if (!known || same_file(&lib->file, &now)) {
            return lib;
        }
        *link = lib->next;
        cpl_pluginlist_delete(lib->recipes);
        free(lib->path);
        free(lib);
        replaced = 1;
        break;
    }
    loaded_plugin *lib = replaced ? plugin_reload(path, err, err_len)
                                  : plugin_load(path, err, err_len);
    if (lib != NULL) {
        if (known) {
            lib->file = now;
        }
        lib->next = cache;
        cache = lib;
        cache_generation++;
    }
    return lib;
}

unsigned long plugin_cache_generation(void)
{
    return cache_generation;
}

cpl_pluginlist *plugin_fresh_list(loaded_plugin *lib)
{
    for (loaded_plugin *l = cache; l != NULL; l = l->next) {
        cpl_pluginlist_delete(l->recipes);
        l->recipes = NULL;
    }
    int (*get_info)(cpl_pluginlist *) =
        (int (*)(cpl_pluginlist *))dlsym(lib->handle, "cpl_plugin_get_info");
    cpl_pluginlist *list = cpl_pluginlist_new();
    cpl_errorstate state = cpl_errorstate_get();
    if (get_info != NULL) {
        get_info(list);
    }
    cpl_errorstate_set(state);
    lib->recipes = list;
    return list;
}

cpl_plugin *plugin_find_recipe(loaded_plugin *lib, const char *name)
{
    for (cpl_plugin *p = cpl_pluginlist_get_first(lib->recipes); p != NULL;
         p = cpl_pluginlist_get_next(lib->recipes)) {
        if (plugin_is_recipe(p) && strcmp(cpl_plugin_get_name(p), name) == 0) {
            return p;
        }
    }
    return NULL;
}

int protect_stdout(void)
{
    fflush(stdout);
    int out = dup(STDOUT_FILENO);
    int devnull = open("/dev/null", O_WRONLY);
    if (out < 0 || devnull < 0) {
        return -1;
    }
    dup2(devnull, STDOUT_FILENO);
    close(devnull);
    fcntl(out, F_SETFD, FD_CLOEXEC);
    return out;
}
