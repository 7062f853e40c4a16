#!/usr/bin/env bash
# Builds the libFuzzer target for the envelope decoder and runs it.
#
#   Tools/fuzz/run.sh [SECONDS]        (default 600)
#
# Environment: FUZZ_JOBS (parallel workers, default 1), FUZZ_MAX_LEN (default 16384),
# FUZZ_ONLY_BUILD=1 (build and seed, do not run).
#
# The fuzzer is built with swiftc directly, outside SwiftPM (which has no fuzzer support):
# CartritaEnvelope and CartritaCodec are compiled as two modules with coverage and
# AddressSanitizer instrumentation, then linked with the harness (FuzzDecoder.swift) and the
# tests' EnvelopeGenerator.swift (used to seed the corpus), libFuzzer and msgpack-c.
# Exit status: 0 when the run ended without a finding, 1 when libFuzzer reported a crash, leak,
# timeout or out-of-memory (the reproducer is in Tools/fuzz/artifacts/).
set -euo pipefail

SECONDS_TO_RUN="${1:-600}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BUILD="$HERE/.build"
CORPUS="$HERE/corpus"
ARTIFACTS="$HERE/artifacts"
SWIFTC="${SWIFTC:-swiftc}"
mkdir -p "$BUILD" "$CORPUS" "$ARTIFACTS"

FLAGS=(-sanitize=fuzzer,address -O -g -swift-version 6 -enable-upcoming-feature ExistentialAny -parse-as-library)

echo "== building CartritaEnvelope"
"$SWIFTC" "${FLAGS[@]}" -module-name CartritaEnvelope -wmo -emit-module -emit-module-path "$BUILD/CartritaEnvelope.swiftmodule" \
    -c -o "$BUILD/CartritaEnvelope.o" "$ROOT"/Sources/CartritaEnvelope/*.swift

echo "== building CartritaCodec"
"$SWIFTC" "${FLAGS[@]}" -module-name CartritaCodec -wmo -emit-module -emit-module-path "$BUILD/CartritaCodec.swiftmodule" \
    -I "$BUILD" -I "$ROOT/Sources/CMsgPack" \
    -c -o "$BUILD/CartritaCodec.o" "$ROOT"/Sources/CartritaCodec/*.swift

echo "== building the fuzzer"
"$SWIFTC" "${FLAGS[@]}" -module-name FuzzDecoder -I "$BUILD" -I "$ROOT/Sources/CMsgPack" \
    "$HERE/FuzzDecoder.swift" "$ROOT/Tests/CartritaCodecTests/EnvelopeGenerator.swift" \
    "$BUILD/CartritaEnvelope.o" "$BUILD/CartritaCodec.o" -lmsgpackc -use-ld=lld -o "$BUILD/fuzz-decoder"

echo "== seeding $CORPUS"
CARTRITA_FUZZ_WRITE_SEEDS="$CORPUS" "$BUILD/fuzz-decoder"

if [[ "${FUZZ_ONLY_BUILD:-0}" == "1" ]]; then
    exit 0
fi

# Findings from an earlier run would make this one look failed: keep them aside.
shopt -s nullglob
old=("$ARTIFACTS"/crash-* "$ARTIFACTS"/leak-* "$ARTIFACTS"/timeout-* "$ARTIFACTS"/oom-*)
if (( ${#old[@]} > 0 )); then
    mkdir -p "$ARTIFACTS/previous"
    mv "${old[@]}" "$ARTIFACTS/previous/"
fi

echo "== fuzzing for $SECONDS_TO_RUN s"
# -malloc_limit_mb: any single allocation over 64 MB is a finding (inputs are at most
# FUZZ_MAX_LEN bytes, so a big allocation means a lying length got through).
# Swift's own crash backtracer would fight ASan for the crashing process: leave it to ASan.
export SWIFT_BACKTRACE=enable=no
# With FUZZ_JOBS > 1, libFuzzer runs that many workers and writes their output to
# Tools/fuzz/artifacts/fuzz-N.log.
parallel=()
if (( ${FUZZ_JOBS:-1} > 1 )); then
    parallel=(-jobs="$FUZZ_JOBS" -workers="$FUZZ_JOBS")
fi
status=0
(cd "$ARTIFACTS" && "$BUILD/fuzz-decoder" \
    -max_total_time="$SECONDS_TO_RUN" \
    -max_len="${FUZZ_MAX_LEN:-16384}" \
    -malloc_limit_mb=64 \
    -rss_limit_mb=2048 \
    -timeout=10 \
    -print_final_stats=1 \
    "${parallel[@]}" \
    -artifact_prefix="$ARTIFACTS/" \
    "$CORPUS") || status=$?

found=("$ARTIFACTS"/crash-* "$ARTIFACTS"/leak-* "$ARTIFACTS"/timeout-* "$ARTIFACTS"/oom-*)
if (( ${#found[@]} > 0 )); then
    echo "== FINDINGS:" "${found[@]}"
    exit 1
fi
if (( status != 0 )); then
    echo "== libFuzzer exited with status $status"
    exit 1
fi
echo "== no findings"
