#ifndef MULTIPLEXER_CHIREDISREADER_H
#define MULTIPLEXER_CHIREDISREADER_H
#include <hiredis/hiredis.h>

// hiredis 0.14's reader allocates an array reply's element pointers as soon as its `*<n>` header arrives, for
// any n up to INT_MAX: a 13-byte reply could make it calloc 16 GB (found by the FuzzRedisReply target). The
// gateway's largest legitimate reply has a few thousand elements, so a limited reader refuses an array header
// above CHIREDIS_MAX_ARRAY_ELEMENTS: it reports an error, as for any protocol violation, before allocating.
#define CHIREDIS_MAX_ARRAY_ELEMENTS (1 << 20)

// Puts the limit on `reader` (created with hiredis's default reply functions; every other function stays
// hiredis's own). Returns 0, or -1 if the reader has no function table to wrap.
int chiredis_limit_reader(redisReader *reader);
#endif
