#!/usr/bin/env bash
# Builds the libFuzzer targets of Fuzz/ with coverage and the address sanitizer, and runs each for a bounded
# time over its seed corpus (Fuzz/Corpus/<target>, never written to: new inputs go to a work directory).
#
#   scripts/fuzz.sh [seconds per target, default 60] [target …]
#
# Targets: FuzzRequest (JSON parser, request validation, upstream body rewrite, path rules), FuzzSSE (SSE
# parser and event-boundary scanner), FuzzConfig (configuration loader), FuzzRedisReply (hiredis's reader
# and the decoders of the scripts' replies). A crash leaves its input in .build-fuzz/artifacts/<target>/ and
# fails the script; rerun one input with `.build-fuzz/debug/<target> <file>`.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(FuzzRequest FuzzSSE FuzzConfig FuzzRedisReply)
swift_bin=$(dirname "$(readlink -f "$(command -v swift)")")
runtime=$(ls "$swift_bin"/../lib/clang/*/lib/linux/libclang_rt.fuzzer_no_main-"$(uname -m)".a | head -1)
# -sanitize-coverage=edge,trace-cmp plus the counters and PC table libFuzzer reads (what clang's
# -fsanitize=fuzzer turns on); libFuzzer without its main, because SwiftPM's executables bring their own.
flags=(
    -Xswiftc -sanitize=address -Xswiftc -sanitize-coverage=edge,trace-cmp
    -Xswiftc -Xllvm -Xswiftc -sanitizer-coverage-inline-8bit-counters
    -Xswiftc -Xllvm -Xswiftc -sanitizer-coverage-pc-table
    -Xswiftc -Xllvm -Xswiftc -sanitizer-coverage-trace-pc-guard=false
    -Xswiftc -enable-testing
    -Xlinker "$runtime" -Xlinker -lstdc++
)
echo "== building fuzz targets =="
swift build --package-path Fuzz --scratch-path .build-fuzz "${flags[@]}" 2>&1 | grep -v "Cannot export local symbol" || { echo "fuzz build failed"; exit 1; }
bin=.build-fuzz/debug
status=0
for t in "${targets[@]}"; do
    corpus=Fuzz/Corpus/$t
    work=.build-fuzz/corpus/$t
    artifacts=.build-fuzz/artifacts/$t/
    mkdir -p "$work" "$artifacts"
    echo "== $t: ${seconds}s =="
    # The Swift runtime's backtracer would hold a crashing input's process: libFuzzer reports crashes itself.
    if ! SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=0 \
        "$bin/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
        -artifact_prefix="$artifacts" "$work" "$corpus" 2>"$work.log"; then
        status=1
        echo "$t: CRASH — input in $artifacts"
        grep -E "ERROR|Fatal error|property failed|SUMMARY" "$work.log" | head -5
    fi
    grep -E "stat::number_of_executed_units|Done [0-9]+ runs" "$work.log" | tail -2 || true
done
exit $status
