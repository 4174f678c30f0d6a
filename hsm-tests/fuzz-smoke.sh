#!/usr/bin/env bash
# Builds the fuzz targets in fuzz/ with libFuzzer's coverage instrumentation and runs each one
# for a short while (FUZZ_SECONDS, default 15) on its seed corpus; fails on any crash, hang
# (-timeout) or out-of-memory (-rss_limit_mb). Works on stable Rust: it needs no cargo-fuzz
# and no nightly, because it passes the coverage flags itself and leaves out AddressSanitizer
# (tufkey is #![forbid(unsafe_code)]). The long runs are in docs/testing.md, "Fuzzing".
#
#   hsm-tests/fuzz-smoke.sh                 build, then run every target
#   hsm-tests/fuzz-smoke.sh key_uri piv_tlv build, then run only these
#   FUZZ_SECONDS=600 hsm-tests/fuzz-smoke.sh cjson_metadata
#   hsm-tests/fuzz-smoke.sh --build-only    only build (run.sh builds while the tests run)
#   hsm-tests/fuzz-smoke.sh --run-only      only run what was built
# CARGO_TARGET_DIR is honoured (run.sh builds into its own, so the build does not wait for
# the test build's lock on target/).
#
# New inputs found (and any file a target writes) go to a temporary folder that is removed:
# the seed corpora in fuzz/corpus/ change only when someone copies an input there on purpose.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-15}
host=$(rustc -vV | sed -n 's/^host: //p')
build=1 run=1
case "${1:-}" in
  --build-only) run=0; shift ;;
  --run-only) build=0; shift ;;
esac
target_dir=${CARGO_TARGET_DIR:-target}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^tufkey-fuzz$')
fi

# The flags cargo-fuzz passes (without -Zsanitizer, which needs nightly). Building for an
# explicit --target keeps these flags off build scripts and out of target/debug, so the
# ordinary build is not rebuilt afterwards.
export RUSTFLAGS="-Cpasses=sancov-module \
  -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
  -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares \
  --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
export CARGO_PROFILE_DEV_DEBUG=line-tables-only

start=$(date +%s)
if [ $build = 1 ]; then
  cargo build --quiet -p tufkey-fuzz --target "$host" --bins
  echo "fuzz targets built in $(($(date +%s) - start)) s"
fi
[ $run = 1 ] || exit 0

work=$(mktemp -d "${TMPDIR:-/tmp}/tufkey-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
failed=()
for t in "${targets[@]}"; do
  bin=$target_dir/$host/debug/$t
  [ -x "$bin" ] || { echo "no fuzz target named $t (see fuzz/Cargo.toml)" >&2; exit 2; }
  mkdir -p "$work/$t/corpus" "$work/$t/artifacts" "$work/$t/tmp"
  dict=()
  [ -f "fuzz/dicts/$t.dict" ] && dict=("-dict=fuzz/dicts/$t.dict")
  echo "== fuzzing $t for ${seconds} s"
  # TMPDIR: files a target writes (notary_files writes a trust folder) go with $work.
  if TMPDIR="$work/$t/tmp" "$bin" "$work/$t/corpus" "fuzz/corpus/$t" "${dict[@]}" \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
      -print_final_stats=1 -artifact_prefix="$work/$t/artifacts/" \
      >"$work/$t/log" 2>&1; then
    grep -E '^(stat::number_of_executed_units|stat::new_units_added)' "$work/$t/log" | tr '\n' ' '
    echo
  else
    echo "fuzz target $t FAILED; its log ends:" >&2
    tail -n 40 "$work/$t/log" >&2
    for a in "$work/$t"/artifacts/*; do
      [ -e "$a" ] || continue
      mkdir -p fuzz/artifacts/"$t"
      cp "$a" fuzz/artifacts/"$t"/
      echo "crashing input kept as fuzz/artifacts/$t/$(basename "$a"); reproduce: $bin fuzz/artifacts/$t/$(basename "$a")" >&2
    done
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz smoke run failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz smoke run: ${#targets[@]} targets, ${seconds} s each, no crash, in $(($(date +%s) - start)) s"
