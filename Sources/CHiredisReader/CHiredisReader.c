#include "CHiredisReader.h"
#include <pthread.h>

// hiredis's reply functions are static in hiredis.c: the table is copied from a reader's, once, and only
// createArray is wrapped.
static redisReplyObjectFunctions limited_functions;
static void *(*default_create_array)(const redisReadTask *, int);
static pthread_once_t functions_once = PTHREAD_ONCE_INIT;

static void *create_array(const redisReadTask *task, int elements) {
    if (elements > CHIREDIS_MAX_ARRAY_ELEMENTS) return NULL;  // the reader reports "Out of memory"
    return default_create_array(task, elements);
}

static void copy_functions(void) {
    redisReader *source = redisReaderCreate();
    if (source == NULL) return;
    if (source->fn != NULL && source->fn->createArray != NULL) {
        limited_functions = *source->fn;
        default_create_array = source->fn->createArray;
        limited_functions.createArray = create_array;
    }
    redisReaderFree(source);
}

int chiredis_limit_reader(redisReader *reader) {
    if (reader == NULL || reader->fn == NULL || reader->fn->createArray == NULL) return -1;
    pthread_once(&functions_once, copy_functions);
    if (default_create_array == NULL) return -1;
    reader->fn = &limited_functions;
    return 0;
}
