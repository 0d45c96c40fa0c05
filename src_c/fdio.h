/* Writing to descriptors (pipes, files) in whole. */
#ifndef CPLRUN_FDIO_H
#define CPLRUN_FDIO_H

#include <stddef.h>

/* Writes all len bytes, across short writes and signals; 0 on success,
 * -1 (errno set) when the descriptor refuses. */
int fd_write_all(int fd, const char *data, size_t len);

#endif
