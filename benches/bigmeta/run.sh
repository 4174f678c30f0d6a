#!/usr/bin/env bash
# Big metadata (issue 11, P3) and root chains (P4): tufkey against python-tuf, same files,
# same key type (ECDSA P-256), in one run. Prints best-of-N times, ratios and peak RSS.
#
#   benches/bigmeta/run.sh [TARGETS=100000] [ROOTS=100] [RUNS=5]
#   BIGMETA_CHAIN_KEY=ed25519 benches/bigmeta/run.sh …   (the chain's keys; default P-256)
#
# Needs: a release build (built here if missing), SoftHSM (tufkey's key lives on a
# throwaway token), python-tuf (TUFKEY_TEST_PYTHON, or target/interop-venv/bin/python).
# tufkey's times are whole processes (start-up included); python-tuf's are in-process
# (interpreter start and imports excluded), so the ratios are conservative. Wall time is
# the target's measure; CPU time (user + system) is printed beside it because on a
# shared machine wall time includes waiting for a core.
# tuftool: its CLI has no command that signs or verifies one given targets file (only
# `root sign`, and `update`/`download` for a whole repository), so it is skipped with a
# message; see docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
targets=${1:-100000} roots=${2:-100} runs=${3:-5}
py=${TUFKEY_TEST_PYTHON:-$PWD/target/interop-venv/bin/python}
here=benches/bigmeta
work=target/bigmeta-bench
tufkey=$PWD/target/release/tufkey
[ -x "$tufkey" ] || cargo build --release --bin tufkey
rm -rf "$work" && mkdir -p "$work"
work=$(cd "$work" && pwd)

# tufkey's key: P-256 on a throwaway SoftHSM token.
export SOFTHSM2_CONF
SOFTHSM2_CONF=$(softhsm-config/new-token.sh "$work/hsm" bench 1234)
uri="pkcs11:token=bench;object=targets?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=1234"
"$tufkey" key generate "$uri" --type ecdsa-p256 >/dev/null
"$tufkey" --json key show "$uri" >"$work/tufkey-key.json"

echo "== generating $targets targets and a chain of $roots roots (python-tuf)"
"$py" "$here/pytuf.py" make "$work" "$targets" "$roots" "$work/tufkey-key.json" "${BIGMETA_CHAIN_KEY:-ecdsa}"
size=$(stat -c %s "$work/targets.json")
echo "targets.json: $size bytes"

# best WALL_SECONDS and peak RSS (KiB) of RUNS runs of a command (wait4 rusage, the
# counter /usr/bin/time -v reports as "Maximum resident set size").
measure() {
  "$py" - "$runs" "$@" <<'EOF'
import os, subprocess, sys, time, json
runs, cmd = int(sys.argv[1]), sys.argv[2:]
best, best_cpu, rss = None, None, 0
for _ in range(runs):
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    if status != 0:
        sys.exit(f"failed ({status}): {' '.join(cmd)}")
    best = dt if best is None else min(best, dt)
    cpu = usage.ru_utime + usage.ru_stime
    best_cpu = cpu if best_cpu is None else min(best_cpu, cpu)
    rss = max(rss, usage.ru_maxrss)
print(json.dumps({"best_s": best, "cpu_s": best_cpu, "rss_kib": rss}))
EOF
}
field() { "$py" -c "import json,sys; print(json.loads(sys.argv[1])['$1'])" "$2"; }
ratio() { "$py" -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.1f}')" "$1" "$2"; }

echo "== P3: sign ($runs runs each, best)"
tk_sign=$(measure "$tufkey" sign "$work/targets.json" --key "$uri" --out "$work/tufkey-signed.json")
py_sign=$("$py" "$here/pytuf.py" sign "$work/targets.json" "$work/py-key.pem" "$work/py-signed.json" "$runs")
echo "== P3: verify"
tk_verify=$(measure "$tufkey" verify "$work/tufkey-signed.json" --root "$work/root.json")
py_verify=$("$py" "$here/pytuf.py" verify "$work/py-signed.json" "$work/root.json" "$runs")
# python-tuf accepts tufkey's signature too (same payload bytes).
"$py" "$here/pytuf.py" verify "$work/tufkey-signed.json" "$work/root.json" 1 >/dev/null

echo "== P4: a chain of $roots roots (${BIGMETA_CHAIN_KEY:-ecdsa} keys)"
chain=()
for v in $(seq 1 "$roots"); do chain+=("$work/chain/$v.root.json"); done
tk_chain=$(measure "$tufkey" verify "${chain[@]}")
py_chain=$("$py" "$here/pytuf.py" chain "$work" "$roots" "$runs")

limit_kib=$(( (3 * size + 30 * 1024 * 1024) / 1024 ))
printf '\n%-20s %9s %9s %7s   %9s %9s %7s   %12s\n' "" "tufkey s" "python s" "ratio" "tufkey" "python" "ratio" "tufkey"
printf '%-20s %9s %9s %7s   %9s %9s %7s   %12s\n' "" "wall" "wall" "wall" "CPU s" "CPU s" "CPU" "peak RSS"
row() {
  local t p r tc pc
  t=$(field best_s "$2"); p=$(field best_s "$3"); r=$(field rss_kib "$2")
  tc=$(field cpu_s "$2"); pc=$(field cpu_s "$3")
  printf '%-20s %9.3f %9.3f %6sx   %9.3f %9.3f %6sx   %8s KiB\n' "$1" "$t" "$p" "$(ratio "$p" "$t")" "$tc" "$pc" "$(ratio "$pc" "$tc")" "$r"
}
row sign "$tk_sign" "$py_sign"
row verify "$tk_verify" "$py_verify"
row "root chain ($roots)" "$tk_chain" "$py_chain"
echo "RSS limit for P3 (3 x file + 30 MB): $limit_kib KiB"
if command -v tuftool >/dev/null 2>&1; then
  echo "tuftool $(tuftool --version 2>/dev/null | head -1): found, but it has no command that signs or verifies one targets file; skipped"
else
  echo "tuftool: not installed (cargo install tuftool --no-default-features); skipped"
fi
