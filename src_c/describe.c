/* "cplrun-runner describe FILE...": everything Python needs to know about
 * the recipes of some plugin libraries, as one JSON document. */
#include "runner.h"
#include "json_out.h"
#include "plugin.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *type_name(cpl_type type)
{
    switch (type) {
    case CPL_TYPE_BOOL:   return "bool";
    case CPL_TYPE_INT:    return "int";
    case CPL_TYPE_DOUBLE: return "float";
    case CPL_TYPE_STRING: return "str";
    default:              return "unknown";
    }
}

static const char *class_name(cpl_parameter_class cls)
{
    switch (cls) {
    case CPL_PARAMETER_CLASS_VALUE: return "value";
    case CPL_PARAMETER_CLASS_RANGE: return "range";
    case CPL_PARAMETER_CLASS_ENUM:  return "enum";
    default:                        return "invalid";
    }
}

static void write_default(json_writer *w, const cpl_parameter *p)
{
    switch (cpl_parameter_get_type(p)) {
    case CPL_TYPE_BOOL:   json_bool(w, cpl_parameter_get_default_bool(p)); break;
    case CPL_TYPE_INT:    json_int(w, cpl_parameter_get_default_int(p)); break;
    case CPL_TYPE_DOUBLE: json_double(w, cpl_parameter_get_default_double(p)); break;
    case CPL_TYPE_STRING: json_string(w, cpl_parameter_get_default_string(p)); break;
    default:              json_null(w);
    }
}

static void write_range(json_writer *w, const cpl_parameter *p)
{
    json_begin_array(w);
    if (cpl_parameter_get_type(p) == CPL_TYPE_INT) {
        json_int(w, cpl_parameter_get_range_min_int(p));
        json_int(w, cpl_parameter_get_range_max_int(p));
    } else {
        json_double(w, cpl_parameter_get_range_min_double(p));
        json_double(w, cpl_parameter_get_range_max_double(p));
    }
    json_end_array(w);
}

static void write_choices(json_writer *w, const cpl_parameter *p)
{
    json_begin_array(w);
    int n = cpl_parameter_get_enum_size(p);
    for (int i = 0; i < n; i++) {
        switch (cpl_parameter_get_type(p)) {
        case CPL_TYPE_INT:    json_int(w, cpl_parameter_get_enum_int(p, i)); break;
        case CPL_TYPE_DOUBLE: json_double(w, cpl_parameter_get_enum_double(p, i)); break;
        case CPL_TYPE_STRING: json_string(w, cpl_parameter_get_enum_string(p, i)); break;
        default:              json_null(w);
        }
    }
    json_end_array(w);
}

static void write_parameter(json_writer *w, const cpl_parameter *p)
{
    cpl_parameter_class cls = cpl_parameter_get_class(p);
    json_begin_object(w);
    json_key(w, "name");
    json_string(w, cpl_parameter_get_name(p));
    json_key(w, "context");
    json_string(w, cpl_parameter_get_context(p));
    json_key(w, "alias");
    json_string(w, cpl_parameter_get_alias(p, CPL_PARAMETER_MODE_CLI));
    json_key(w, "help");
    json_string(w, cpl_parameter_get_help(p));
    json_key(w, "type");
    json_string(w, type_name(cpl_parameter_get_type(p)));
    json_key(w, "class");
    json_string(w, class_name(cls));
    json_key(w, "default");
    write_default(w, p);
    json_key(w, "range");
    if (cls == CPL_PARAMETER_CLASS_RANGE) {
        write_range(w, p);
    } else {
        json_null(w);
    }
    json_key(w, "choices");
    if (cls == CPL_PARAMETER_CLASS_ENUM) {
        write_choices(w, p);
    } else {
        json_null(w);
    }
    json_key(w, "enabled");
    json_begin_array(w);
    json_bool(w, cpl_parameter_is_enabled(p, CPL_PARAMETER_MODE_CLI));
    json_bool(w, cpl_parameter_is_enabled(p, CPL_PARAMETER_MODE_ENV));
    json_bool(w, cpl_parameter_is_enabled(p, CPL_PARAMETER_MODE_CFG));
    json_end_array(w);
    json_end_object(w);
}

static void free_strings(char **list)
{
    if (list == NULL) {
        return;
    }
    for (char **s = list; *s != NULL; s++) {
        cpl_free(*s);
    }
    cpl_free(list);
}

/* Raw tags with their counts, calibration inputs and output tags, for the
 * recipes (cpl_recipe2) that declare them. */
static void write_frame_config(json_writer *w, const cpl_recipeconfig *cfg)
{
    json_begin_array(w);
    char **tags = cpl_recipeconfig_get_tags(cfg);
    for (char **tag = tags; tag != NULL && *tag != NULL; tag++) {
        json_begin_object(w);
        json_key(w, "tag");
        json_string(w, *tag);
        json_key(w, "min");
        json_int(w, cpl_recipeconfig_get_min_count(cfg, *tag, *tag));
        json_key(w, "max");
        json_int(w, cpl_recipeconfig_get_max_count(cfg, *tag, *tag));
        json_key(w, "inputs");
        json_begin_array(w);
        char **inputs = cpl_recipeconfig_get_inputs(cfg, *tag);
        for (char **in = inputs; in != NULL && *in != NULL; in++) {
            json_begin_object(w);
            json_key(w, "tag");
            json_string(w, *in);
            json_key(w, "min");
            json_int(w, cpl_recipeconfig_get_min_count(cfg, *tag, *in));
            json_key(w, "max");
            json_int(w, cpl_recipeconfig_get_max_count(cfg, *tag, *in));
            json_end_object(w);
        }
        free_strings(inputs);
        json_end_array(w);
        json_key(w, "outputs");
        json_begin_array(w);
        char **outputs = cpl_recipeconfig_get_outputs(cfg, *tag);
        for (char **out = outputs; out != NULL && *out != NULL; out++) {
            json_string(w, *out);
        }
        free_strings(outputs);
        json_end_array(w);
        json_end_object(w);
    }
    free_strings(tags);
    json_end_array(w);
}

/* The frame configuration of a recipe: cpl_recipe2 carries it; MUSE
 * recipes are plain cpl_recipe and register theirs with libmuse, which
 * comes loaded with the plugin. */
static const cpl_recipeconfig *frame_config(loaded_plugin *lib, cpl_plugin *p)
{
    if (cpl_plugin_get_type(p) == CPL_PLUGIN_TYPE_RECIPE_V2
        && ((cpl_recipe2 *)p)->config != NULL) {
        return ((cpl_recipe2 *)p)->config;
    }
    cpl_recipeconfig *(*muse_config)(cpl_recipe *) =
        (cpl_recipeconfig *(*)(cpl_recipe *))dlsym(
            lib->handle, "muse_processing_get_recipeconfig");
    return muse_config != NULL ? muse_config((cpl_recipe *)p) : NULL;
}

static void write_recipe(json_writer *w, loaded_plugin *lib, cpl_plugin *p)
{
    cpl_recipe *recipe = (cpl_recipe *)p;
    cpl_errorstate state = cpl_errorstate_get();
    cpl_plugin_func init = cpl_plugin_get_init(p);
    int init_status = init != NULL ? init(p) : -1;

    json_begin_object(w);
    json_key(w, "name");
    json_string(w, cpl_plugin_get_name(p));
    json_key(w, "version");
    json_int(w, (long long)cpl_plugin_get_version(p));
    json_key(w, "version_string");
    char *version = cpl_plugin_get_version_string(p);
    json_string(w, version);
    cpl_free(version);
    json_key(w, "synopsis");
    json_string(w, cpl_plugin_get_synopsis(p));
    json_key(w, "description");
    json_string(w, cpl_plugin_get_description(p));
    json_key(w, "author");
    json_string(w, cpl_plugin_get_author(p));
    json_key(w, "email");
    json_string(w, cpl_plugin_get_email(p));
    json_key(w, "copyright");
    json_string(w, cpl_plugin_get_copyright(p));
    json_key(w, "init_status");
    json_int(w, init_status);
    json_key(w, "parameters");
    json_begin_array(w);
    if (init_status == 0 && recipe->parameters != NULL) {
        for (const cpl_parameter *par =
                 cpl_parameterlist_get_first_const(recipe->parameters);
             par != NULL;
             par = cpl_parameterlist_get_next_const(recipe->parameters)) {
            write_parameter(w, par);
        }
    }
    json_end_array(w);
    json_key(w, "frames");
    const cpl_recipeconfig *config = init_status == 0 ? frame_config(lib, p)
                                                      : NULL;
    if (config != NULL) {
        write_frame_config(w, config);
    } else {
        json_null(w);
    }
    json_end_object(w);

    cpl_plugin_func deinit = cpl_plugin_get_deinit(p);
    if (init_status == 0 && deinit != NULL) {
        deinit(p);
    }
    cpl_errorstate_set(state);
}

int describe_main(int argc, char **argv)
{
    int out_fd = protect_stdout();
    FILE *out = out_fd >= 0 ? fdopen(out_fd, "w") : NULL;
    if (out == NULL) {
        perror("cplrun-runner: stdout");
        return 2;
    }
    json_writer w;
    json_init(&w, out);
    json_begin_object(&w);
    json_key(&w, "cpl_version");
    json_string(&w, cpl_version_get_version());
    json_key(&w, "cpl_description");
    json_string(&w, cpl_get_description(CPL_DESCRIPTION_DEFAULT));
    json_key(&w, "plugins");
    json_begin_array(&w);
    for (int i = 0; i < argc; i++) {
        char err[4096] = "";
        json_begin_object(&w);
        json_key(&w, "file");
        json_string(&w, argv[i]);
        loaded_plugin *lib = plugin_load(argv[i], err, sizeof err);
        json_key(&w, "error");
        json_string(&w, lib == NULL ? err : NULL);
        json_key(&w, "recipes");
        json_begin_array(&w);
        if (lib != NULL) {
            for (cpl_plugin *p = cpl_pluginlist_get_first(lib->recipes);
                 p != NULL; p = cpl_pluginlist_get_next(lib->recipes)) {
                if (plugin_is_recipe(p)) {
                    write_recipe(&w, lib, p);
                }
            }
        }
        json_end_array(&w);
        json_end_object(&w);
    }
    json_end_array(&w);
    json_end_object(&w);
    fputc('\n', out);
    fclose(out);
    return 0;
}
