#ifndef MULTIPLEXER_CLIBFUZZER_H
#define MULTIPLEXER_CLIBFUZZER_H
#include <stddef.h>
#include <stdint.h>
// libFuzzer's entry for programs that have their own main (libclang_rt.fuzzer_no_main): runs the fuzzing
// loop over `callback` with libFuzzer's command-line flags.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
#endif
