#!/usr/bin/env bash
# Runs the benchmarks in a release build and keeps their JSON under .build/bench/ (not committed).
#   Tools/bench.sh                 # cartrita bench log with the defaults (1,000,000-record scan log)
#   Tools/bench.sh --records 200000 --seconds 1
set -euo pipefail
cd "$(dirname "$0")/.."
Tools/deps.sh
swift build -c release --product cartrita >&2
mkdir -p .build/bench
out=".build/bench/log-$(date +%Y%m%d-%H%M%S).json"
.build/release/cartrita bench log --json "$@" | tee "$out"
echo "saved $out" >&2
