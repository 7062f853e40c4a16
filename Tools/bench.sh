#!/usr/bin/env bash
# Runs a benchmark in a release build and keeps its JSON under .build/bench/ (not committed).
#   Tools/bench.sh                          # cartrita bench log with the defaults (1,000,000-record scan log)
#   Tools/bench.sh log --records 200000 --seconds 1
#   Tools/bench.sh runtime                  # cartrita bench runtime (tasks/s, replay, recovery of 1M messages)
set -euo pipefail
cd "$(dirname "$0")/.."
Tools/deps.sh
swift build -c release --product cartrita >&2
mkdir -p .build/bench
which=log
if [ $# -gt 0 ] && [[ "$1" != -* ]]; then which=$1; shift; fi
out=".build/bench/$which-$(date +%Y%m%d-%H%M%S).json"
.build/release/cartrita bench "$which" --json "$@" | tee "$out"
echo "saved $out" >&2
