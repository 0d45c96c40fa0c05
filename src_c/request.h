/* Requests from Python to the runner.
 *
 * A request is one netstring ("<length>:<payload>,") whose payload is a
 * sequence of netstrings forming key/value pairs.  Keys may repeat (one
 * "param" or "frame" per item), so a request is an ordered list, not a map.
 * Netstrings carry any byte except NUL, so paths and values need no
 * quoting and nothing is ever interpreted by a shell. */
#ifndef CPLRUN_REQUEST_H
#define CPLRUN_REQUEST_H

#include <stddef.h>

/* The longest request payload the server reads: a longer one loses the
 * framing and ends the server.  It says this figure in its "ready" reply,
 * and Python (Server.max_request in cpl/_runner.py, MAX_REQUEST_BYTES
 * there when a runner does not say it) refuses a longer request before
 * sending it. */
#define CPLRUN_MAX_REQUEST (64u * 1024u * 1024u)

typedef struct {
    char *key;
    char *value;
} request_field;

typedef struct {
    request_field *fields;
    int count;
} request;

/* Parses one netstring at the start of buf[0..len).
 * Returns 1 and sets *payload, *payload_len, *consumed when complete,
 * 0 when more bytes are needed, -1 when the bytes cannot be a netstring. */
int netstring_take(const char *buf, size_t len, const char **payload,
                   size_t *payload_len, size_t *consumed);

/* Splits a request payload into fields.  Returns 0 on success, -1 when it
 * is malformed (odd number of items, NUL bytes, bad framing). */
int request_parse(const char *payload, size_t len, request *out);
void request_free(request *req);

/* The first value of key, or NULL. */
const char *request_get(const request *req, const char *key);

#endif
