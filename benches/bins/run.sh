#!/bin/sh
# P5, first half: re-signing every hashed bin with a P-256 key on SoftHSM against the
# plain cryptoki loop at the same thread count, in one run (benches/bins/main.rs says
# exactly what each side does). Prints each round and a Markdown table for
# docs/performance.md ("Re-signing hashed bins"); the output is also kept in
# target/bench-bins.txt.
#
#   benches/bins/run.sh                       # 16,384 bins, 2 threads, 3 rounds
#   BENCH_BINS=1024 BENCH_ROUNDS=5 benches/bins/run.sh
#
# Needs softhsm2 (the token is a throwaway one in a temp dir) and a release build
# (cargo bench builds it). Nothing here asserts a time: it only reports.
set -eu
cd "$(dirname "$0")/../.."
out=target/bench-bins.txt
mkdir -p target
{
    echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "# $(nproc) CPUs; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
    echo "# softhsm2 $(dpkg-query -W -f '${Version}' softhsm2 2>/dev/null || echo '?'); $(rustc --version)"
} > "$out"
cargo bench --bench bins 2>/dev/null | tee -a "$out"
echo "(kept in $out)"
