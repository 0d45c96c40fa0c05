/* Minimal JSON writer: the runner's replies and result files are JSON so
 * that the Python side decodes them with the standard library. */
#ifndef CPLRUN_JSON_OUT_H
#define CPLRUN_JSON_OUT_H

#include <stdio.h>

typedef struct {
    FILE *out;
    int need_comma[64];   /* one flag per nesting level */
    int depth;
} json_writer;

void json_init(json_writer *w, FILE *out);
void json_begin_object(json_writer *w);
void json_end_object(json_writer *w);
void json_begin_array(json_writer *w);
void json_end_array(json_writer *w);
/* A key inside an object; the next value call writes its value. */
void json_key(json_writer *w, const char *key);
void json_string(json_writer *w, const char *value);   /* NULL -> null */
void json_int(json_writer *w, long long value);
void json_double(json_writer *w, double value);
void json_bool(json_writer *w, int value);
void json_null(json_writer *w);

#endif
