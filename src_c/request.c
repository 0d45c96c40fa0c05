#include "request.h"

#include <stdlib.h>
#include <string.h>

int netstring_take(const char *buf, size_t len, const char **payload,
                   size_t *payload_len, size_t *consumed)
{
    size_t n = 0;
    size_t i = 0;
    while (i < len && buf[i] >= '0' && buf[i] <= '9') {
        if (i >= 10) {
            return -1;
        }
        n = n * 10 + (size_t)(buf[i] - '0');
        i++;
    }
    if (i == len) {
        return 0;
    }
    if (i == 0 || buf[i] != ':' || n > CPLRUN_MAX_REQUEST
        || (i > 1 && buf[0] == '0')) {
        return -1;
    }
    i++;
    if (len - i < n + 1) {
        return 0;
    }
    if (buf[i + n] != ',') {
        return -1;
    }
    *payload = buf + i;
    *payload_len = n;
    *consumed = i + n + 1;
    return 1;
}

static char *copy_item(const char *p, size_t n)
{
    if (memchr(p, '\0', n) != NULL) {
        return NULL;
    }
    char *s = malloc(n + 1);
    if (s != NULL) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

int request_parse(const char *payload, size_t len, request *out)
{
    out->fields = NULL;
    out->count = 0;
    int capacity = 0;
    size_t pos = 0;
    while (pos < len) {
        const char *item[2];
        size_t item_len[2];
        for (int k = 0; k < 2; k++) {
            size_t used;
            if (pos >= len
                || netstring_take(payload + pos, len - pos, &item[k],
                                  &item_len[k], &used) != 1) {
                request_free(out);
                return -1;
            }
            pos += used;
        }
        if (out->count == capacity) {
            capacity = capacity ? 2 * capacity : 16;
            request_field *grown = realloc(out->fields,
                                           (size_t)capacity * sizeof *grown);
            if (grown == NULL) {
                request_free(out);
                return -1;
            }
            out->fields = grown;
        }
        request_field *f = &out->fields[out->count];
        f->key = copy_item(item[0], item_len[0]);
        f->value = copy_item(item[1], item_len[1]);
        out->count++;
        if (f->key == NULL || f->value == NULL) {
            request_free(out);
            return -1;
        }
    }
    return 0;
}

void request_free(request *req)
{
    for (int i = 0; i < req->count; i++) {
        free(req->fields[i].key);
        free(req->fields[i].value);
    }
    free(req->fields);
    req->fields = NULL;
    req->count = 0;
}

const char *request_get(const request *req, const char *key)
{
    for (int i = 0; i < req->count; i++) {
        if (strcmp(req->fields[i].key, key) == 0) {
            return req->fields[i].value;
        }
    }
    return NULL;
}
