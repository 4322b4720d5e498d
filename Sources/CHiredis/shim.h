#ifndef MULTIPLEXER_CHIREDIS_SHIM_H
#define MULTIPLEXER_CHIREDIS_SHIM_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
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
// Names the calling thread (shown by top -H and in /proc): pthread_setname_np is not visible through
// Swift's Glibc module.
static inline void chiredis_name_current_thread(const char *name) { pthread_setname_np(pthread_self(), name); }
#endif
