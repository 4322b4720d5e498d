#ifndef MULTIPLEXER_CHIREDIS_SHIM_H
#define MULTIPLEXER_CHIREDIS_SHIM_H
// No _GNU_SOURCE here: it changes glibc's own declarations (fd_set's member is `fds_bits` instead of
// `__fds_bits`), and a module that sees them differently from Foundation's CDispatch fails to build
// ("'__fds_bits' from module 'CDispatch' is not present in definition of 'fd_set' in module
// 'CHiredis'"), depending on which module's copy the compiler meets first.
#include <pthread.h>
// Debian's libhiredis-dev 0.14.1. Included as <hiredis/hiredis.h> so no -I/usr/include/hiredis is
// needed (that path would put generic names such as read.h and sds.h on the include path).
#include <hiredis/hiredis.h>
#include <sys/time.h>

// redisContext.errstr is a char[128], which Swift imports as a 128-element tuple.
static inline const char *chiredis_errstr(const redisContext *c) { return c->errstr; }
static inline int chiredis_err(const redisContext *c) { return c->err; }

// struct timeval by value, built in C so Swift need not know its field types on every platform.
static inline redisContext *chiredis_connect(const char *host, int port, long timeout_ms) {
    struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
    return redisConnectWithTimeout(host, port, tv);
}
static inline int chiredis_set_timeout(redisContext *c, long timeout_ms) {
    struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
    return redisSetTimeout(c, tv);
}

#endif
