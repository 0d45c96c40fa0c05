#include "plugin.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static loaded_plugin *cache = NULL;

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

loaded_plugin *plugin_cache_get(const char *path, char *err, size_t err_len)
{
    for (loaded_plugin *lib = cache; lib != NULL; lib = lib->next) {
        if (strcmp(lib->path, path) == 0) {
            return lib;
        }
    }
    loaded_plugin *lib = plugin_load(path, err, err_len);
    if (lib != NULL) {
        lib->next = cache;
        cache = lib;
    }
    return lib;
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
