#include "json_out.h"

#include <math.h>
#include <string.h>

void json_init(json_writer *w, FILE *out)
{
    w->out = out;
    w->depth = 0;
    w->need_comma[0] = 0;
}

/* need_comma: 0 before the first item of a level, 1 after an item, 2 right
 * after a key (whose value must not be preceded by a comma). */
static void before_value(json_writer *w)
{
    if (w->need_comma[w->depth] == 1) {
        fputc(',', w->out);
    }
    w->need_comma[w->depth] = 1;
}

static void open_level(json_writer *w, char c)
{
    before_value(w);
    fputc(c, w->out);
    if (w->depth < 63) {
        w->depth++;
    }
    w->need_comma[w->depth] = 0;
}

static void close_level(json_writer *w, char c)
{
    fputc(c, w->out);
    if (w->depth > 0) {
        w->depth--;
    }
}

void json_begin_object(json_writer *w) { open_level(w, '{'); }
void json_end_object(json_writer *w) { close_level(w, '}'); }
void json_begin_array(json_writer *w) { open_level(w, '['); }
void json_end_array(json_writer *w) { close_level(w, ']'); }

static void write_escaped(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':  fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\n': fputs("\\n", out); break;
        case '\r': fputs("\\r", out); break;
        case '\t': fputs("\\t", out); break;
        default:
            if (*p < 0x20) {
                fprintf(out, "\\u%04x", *p);
            } else {
                /* Bytes >= 0x80 pass through; the reader decodes UTF-8
                 * with replacement, since recipe texts are not always
                 * valid UTF-8. */
                fputc(*p, out);
            }
        }
    }
    fputc('"', out);
}

void json_key(json_writer *w, const char *key)
{
    before_value(w);
    write_escaped(w->out, key);
    fputc(':', w->out);
    w->need_comma[w->depth] = 2;
}

void json_string(json_writer *w, const char *value)
{
    before_value(w);
    if (value == NULL) {
        fputs("null", w->out);
    } else {
        write_escaped(w->out, value);
    }
}

void json_int(json_writer *w, long long value)
{
    before_value(w);
    fprintf(w->out, "%lld", value);
}

void json_double(json_writer *w, double value)
{
    before_value(w);
    if (isfinite(value)) {
        char text[32];
        snprintf(text, sizeof text, "%.17g", value);
        fputs(text, w->out);
        /* "0" would be read back as an int (Stat.user_time 0 instead of
         * 0.0): a double keeps a fraction. */
        if (text[strspn(text, "-0123456789")] == '\0') {
            fputs(".0", w->out);
        }
    } else if (isnan(value)) {
        fputs("NaN", w->out);
    } else {
        fputs(value > 0 ? "Infinity" : "-Infinity", w->out);
    }
}

void json_bool(json_writer *w, int value)
{
    before_value(w);
    fputs(value ? "true" : "false", w->out);
}

void json_null(json_writer *w)
{
    before_value(w);
    fputs("null", w->out);
}
