#!/usr/bin/env bash
# RUSTC_WRAPPER for the fuzz smoke build in hsm-tests/run.sh: libFuzzer's coverage
# instrumentation (the sancov flags hsm-tests/fuzz-smoke.sh puts in RUSTFLAGS) only for this
# workspace's crates (tufkey, pcsc-sys, the fuzz targets); crates.io dependencies (serde,
# tokio, ring, rustls, …) are compiled without it, which makes the build cheaper
# (docs/testing.md, "CI time"). Everything else is passed on as it is, `--cfg fuzzing`, debug
# assertions and overflow checks included.
#
# The trade-off: a run gets no coverage feedback from inside the dependencies (the toml and
# JSON parsers, for instance), so it explores them less well. Fine for a 15-second smoke run;
# the long runs (hsm-tests/fuzz-long.sh) build without this wrapper, fully instrumented.
#
# Cargo's fingerprints do not see what a wrapper changes: use it only with a target folder
# of its own (run.sh: target/fuzz-smoke), never one that a plain fuzz-smoke.sh build uses.
set -euo pipefail
rustc=$1
shift
root=$(cd "$(dirname "$0")/.." && pwd)
case "${CARGO_MANIFEST_DIR:-}" in
  "$root" | "$root"/*) exec "$rustc" "$@" ;;
esac
args=()
for a in "$@"; do
  case $a in
    -Cpasses=sancov-module | -Cllvm-args=-sanitizer-coverage-*) ;;
    *) args+=("$a") ;;
  esac
done
exec "$rustc" "${args[@]}"
