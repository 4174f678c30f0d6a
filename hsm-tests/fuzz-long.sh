#!/usr/bin/env bash
# The long fuzz runs of issue 13 (docs/testing.md, "Fuzzing"): each target runs until it has
# had FUZZ_CPU_MINUTES (default 30) of CPU time, not wall time, so a run on a shared machine
# means the same amount of fuzzing as one on a quiet machine. Not part of CI (the smoke run
# in hsm-tests/run.sh is).
#
#   hsm-tests/fuzz-long.sh                      every target, two at a time
#   hsm-tests/fuzz-long.sh key_uri piv_tlv      only these
#   FUZZ_CPU_MINUTES=5 FUZZ_PARALLEL=1 hsm-tests/fuzz-long.sh cjson_metadata
#
# Environment: FUZZ_CPU_MINUTES (30), FUZZ_PARALLEL (2), FUZZ_NICE (19: the runs take what
# CPU is idle), FUZZ_WORK (target/fuzz-long: corpora, logs, results), CARGO_TARGET_DIR (where
# hsm-tests/fuzz-smoke.sh --build-only builds the targets; default target).
#
# Each target keeps its corpus in FUZZ_WORK/TARGET/corpus (a later run goes on from it) and
# starts from the seeds in fuzz/corpus/TARGET. When a target has had its CPU time it is sent
# SIGINT; libFuzzer then prints its final statistics and exits with 72. Any other end (a
# crash, a hang over -timeout, an out-of-memory over -rss_limit_mb) leaves its input in
# FUZZ_WORK/TARGET/artifacts and counts as a failure. One line per target goes to
# FUZZ_WORK/results.tsv; the exit code is 1 if any target failed.
set -euo pipefail
cd "$(dirname "$0")/.."

cpu_minutes=${FUZZ_CPU_MINUTES:-30}
parallel=${FUZZ_PARALLEL:-2}
niceness=${FUZZ_NICE:-19}
work=${FUZZ_WORK:-$PWD/target/fuzz-long}
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
host=$(rustc -vV | sed -n 's/^host: //p')
case $cpu_minutes$parallel in
  *[!0-9]*) echo "FUZZ_CPU_MINUTES and FUZZ_PARALLEL must be whole numbers" >&2; exit 2 ;;
esac
[ "$cpu_minutes" -gt 0 ] && [ "$parallel" -gt 0 ] || { echo "FUZZ_CPU_MINUTES and FUZZ_PARALLEL must be positive" >&2; exit 2; }

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^tufkey-fuzz$')
fi

CARGO_TARGET_DIR=$target_dir hsm-tests/fuzz-smoke.sh --build-only
mkdir -p "$work"
results=$work/results.tsv
[ -f "$results" ] || printf 'target\tstarted\twall_s\tcpu_s\texecs\texecs_per_cpu_s\tcorpus_files\tpeak_rss_mb\toutcome\n' >"$results"
ticks=$(getconf CLK_TCK)

# CPU seconds (user + system) of a running process, from /proc/PID/stat.
cpu_of() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  stat=${stat##*) }
  set -- $stat
  echo $(( (${12} + ${13}) / ticks ))
}

# Runs one target until its CPU budget is spent; appends its line to results.tsv.
run_one() {
  local t=$1 bin=$target_dir/$host/debug/$1
  [ -x "$bin" ] || { echo "no fuzz target named $t (see fuzz/Cargo.toml)" >&2; return 2; }
  local dir=$work/$t
  mkdir -p "$dir/corpus" "$dir/artifacts" "$dir/tmp"
  local dict=()
  [ -f "fuzz/dicts/$t.dict" ] && dict=("-dict=fuzz/dicts/$t.dict")
  local budget=$((cpu_minutes * 60)) started wall0 cpu=0 rc=0
  started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  wall0=$(date +%s)
  echo "== $t: fuzzing until it has had $cpu_minutes min of CPU (log: $dir/log)"
  # TMPDIR: files a target writes (notary_files writes a trust folder per input) stay in
  # FUZZ_WORK/TARGET/tmp instead of filling /tmp over a long run.
  TMPDIR="$dir/tmp" nice -n "$niceness" "$bin" "$dir/corpus" "fuzz/corpus/$t" "${dict[@]}" \
    -timeout=30 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$dir/artifacts/" >"$dir/log" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    cpu=$(cpu_of "$pid")
    if [ "$cpu" -ge "$budget" ]; then
      kill -INT "$pid" 2>/dev/null || true
      break
    fi
    sleep 10
  done
  wait "$pid" || rc=$?
  local wall=$(($(date +%s) - wall0))
  local execs rss files outcome
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -n1)
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$dir/log" | tail -n1)
  files=$(find "$dir/corpus" -type f | wc -l)
  if [ "$rc" = 72 ] && [ -z "$(ls -A "$dir/artifacts")" ]; then
    outcome=ok
  else
    outcome="FAILED (exit $rc; see $dir/log and $dir/artifacts)"
  fi
  local rate=0
  [ "${cpu:-0}" -gt 0 ] && rate=$(( ${execs:-0} / cpu ))
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$started" "$wall" "$cpu" "${execs:-?}" \
    "$rate" "$files" "${rss:-?}" "$outcome" >>"$results"
  echo "== $t: $outcome after ${wall} s wall, ${cpu} s CPU, ${execs:-?} inputs, corpus $files files"
  [ "$outcome" = ok ]
}

failed=0
running=()
for t in "${targets[@]}"; do
  while [ ${#running[@]} -ge "$parallel" ]; do
    wait -n || failed=1
    alive=()
    for p in "${running[@]}"; do kill -0 "$p" 2>/dev/null && alive+=("$p"); done
    running=("${alive[@]}")
  done
  run_one "$t" &
  running+=($!)
done
for p in "${running[@]}"; do wait "$p" || failed=1; done
column -t -s $'\t' "$results"
exit $failed
