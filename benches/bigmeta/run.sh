#!/usr/bin/env bash
# Big metadata (issue 11, P3) and root chains (P4): tufkey against python-tuf, same files,
# same key type (ECDSA P-256), in one run. Prints best-of-N times, ratios and peak RSS.
#
#   benches/bigmeta/run.sh [TARGETS=100000] [ROOTS=100] [RUNS=5]
#   BIGMETA_PARTS="file repo" benches/bigmeta/run.sh …   (a subset of: file chain repo)
#   BIGMETA_CHAIN_KEY=ed25519 benches/bigmeta/run.sh …   (the chain's keys; default P-256)
#
# Needs: a release build (built here if missing), SoftHSM (tufkey's key lives on a
# throwaway token), python-tuf (TUFKEY_TEST_PYTHON, or target/interop-venv/bin/python).
# tufkey's times are whole processes (start-up included); python-tuf's are in-process
# (interpreter start and imports excluded), so the ratios are conservative. Wall time is
# the target's measure; CPU time (user + system) is printed beside it because on a
# shared machine wall time includes waiting for a core.
# tuftool (TUFTOOL=path, else `tuftool` on PATH; `cargo install tuftool
# --no-default-features`) has no command for one given targets file, so it is compared on
# a whole repository holding the same 100,000 targets (made once per run by `tufkey repo
# init` + `repo add --manifest` + `repo commit`, consistent snapshots, snapshot stating
# lengths and hashes), with one ECDSA P-256 key on every side (tufkey: imported into
# SoftHSM; tuftool: the PKCS#8 DER file; python-tuf: the PEM file):
#   client  `tufkey repo download` / `tuftool download` / python-tuf ngclient, one target
#           from an empty cache (each checks the root chain, timestamp, snapshot, the
#           100,000-target targets.json, then the target file)
#   sign    `tufkey repo commit` after `repo edit targets` / `tuftool update`: load and
#           verify the repository, re-sign targets, snapshot and timestamp, write them
# When tuftool is missing the script says so and times tufkey and python-tuf only.
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
# MEASURE_PRE: a shell command run before each run, untimed (e.g. staging a change);
# MEASURE_FRESH: a folder removed before each run (tools that refuse an existing outdir).
measure() {
  "$py" - "$runs" "$@" <<'EOF'
import os, shutil, subprocess, sys, time, json
runs, cmd = int(sys.argv[1]), sys.argv[2:]
pre, fresh = os.environ.get("MEASURE_PRE"), os.environ.get("MEASURE_FRESH")
best, best_cpu, rss = None, None, 0
for _ in range(runs):
    if pre:
        subprocess.run(pre, shell=True, check=True, stdout=subprocess.DEVNULL)
    if fresh:
        shutil.rmtree(fresh, ignore_errors=True)
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
want() { [[ " ${BIGMETA_PARTS:-file chain repo} " == *" $1 "* ]]; }
field() { "$py" -c "import json,sys; print(json.loads(sys.argv[1])['$1'])" "$2"; }
ratio() { "$py" -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.1f}')" "$1" "$2"; }

if want file; then
echo "== P3: sign ($runs runs each, best)"
tk_sign=$(measure "$tufkey" sign "$work/targets.json" --key "$uri" --out "$work/tufkey-signed.json")
py_sign=$("$py" "$here/pytuf.py" sign "$work/targets.json" "$work/py-key.pem" "$work/py-signed.json" "$runs")
echo "== P3: verify"
tk_verify=$(measure "$tufkey" verify "$work/tufkey-signed.json" --root "$work/root.json")
py_verify=$("$py" "$here/pytuf.py" verify "$work/py-signed.json" "$work/root.json" "$runs")
# python-tuf accepts tufkey's signature too (same payload bytes).
"$py" "$here/pytuf.py" verify "$work/tufkey-signed.json" "$work/root.json" 1 >/dev/null
fi

if want chain; then

echo "== P4: a chain of $roots roots (${BIGMETA_CHAIN_KEY:-ecdsa} keys)"
chain=()
for v in $(seq 1 "$roots"); do chain+=("$work/chain/$v.root.json"); done
tk_chain=$(measure "$tufkey" verify "${chain[@]}")
py_chain=$("$py" "$here/pytuf.py" chain "$work" "$roots" "$runs")
fi

limit_kib=$(( (3 * size + 30 * 1024 * 1024) / 1024 ))
printf '\n%-20s %9s %9s %7s   %9s %9s %7s   %12s\n' "" "tufkey s" "python s" "ratio" "tufkey" "python" "ratio" "tufkey"
printf '%-20s %9s %9s %7s   %9s %9s %7s   %12s\n' "" "wall" "wall" "wall" "CPU s" "CPU s" "CPU" "peak RSS"
row() {
  local t p r tc pc
  t=$(field best_s "$2"); p=$(field best_s "$3"); r=$(field rss_kib "$2")
  tc=$(field cpu_s "$2"); pc=$(field cpu_s "$3")
  printf '%-20s %9.3f %9.3f %6sx   %9.3f %9.3f %6sx   %8s KiB\n' "$1" "$t" "$p" "$(ratio "$p" "$t")" "$tc" "$pc" "$(ratio "$pc" "$tc")" "$r"
}
if want file; then
  row sign "$tk_sign" "$py_sign"
  row verify "$tk_verify" "$py_verify"
fi
want chain && row "root chain ($roots)" "$tk_chain" "$py_chain"
echo "RSS limit for P3 (3 x file + 30 MB): $limit_kib KiB"

# ---- P3 on a whole repository: tufkey repo, tuftool, python-tuf ngclient ----------------
want repo || exit 0
tuftool=${TUFTOOL:-$(command -v tuftool || true)}
if [ -n "$tuftool" ] && [ ! -x "$tuftool" ]; then
  echo "TUFTOOL=$tuftool is not an executable; set TUFTOOL to tuftool's path or unset it" >&2
  exit 1
fi
repo=$work/repo
# repo.toml refuses pin-value=: the PIN comes from a file, as a CI job's would.
printf '1234' >"$work/pin"
repo_uri="pkcs11:token=bench;object=repo?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:$work/pin"
echo "== P3 repository: $targets targets (tufkey repo init, add --manifest, commit)"
"$tufkey" key import "$work/py-key.pem" "$repo_uri" >/dev/null
"$tufkey" repo init "$repo" --root "$work/repo-root.json" \
  --key targets="$repo_uri" --key snapshot="$repo_uri" --key timestamp="$repo_uri" >/dev/null
# Snapshot states targets.json's length: without it tough caps targets.json at 10 MiB
# and ngclient at 5 MB, and this one is bigger.
sed -i 's/^meta_lengths_and_hashes = false/meta_lengths_and_hashes = true/' "$repo/repo.toml"
grep -q '^meta_lengths_and_hashes = true' "$repo/repo.toml"
# At the top level: tough fetches a consistent-snapshot target as targets/HASH.DIR/NAME
# (tufkey and python-tuf: targets/DIR/HASH.NAME), so a target in a folder is not found.
one=hello.txt
printf 'one real target file among %s listed ones\n' "$targets" >"$work/hello.txt"
"$tufkey" repo add "$repo" "$work/hello.txt" --path "$one" >/dev/null
"$tufkey" repo add "$repo" --manifest "$work/manifest.txt" >/dev/null
"$tufkey" repo commit "$repo" >/dev/null
echo "$repo/metadata: $(ls "$repo/metadata" | tr '\n' ' ')"

echo "== P3 repository: client, one target of $targets (empty cache)"
mkdir -p "$work/dl"
tk_dl=$(measure "$tufkey" repo download "$repo" "$one" --out "$work/dl/hello.txt")
py_dl=$("$py" "$here/pytuf.py" download "$repo" "$one" "$runs")
if [ -n "$tuftool" ]; then
  tt_dl=$(MEASURE_FRESH=$work/tt-dl measure "$tuftool" download "$work/tt-dl" \
    --root "$repo/metadata/1.root.json" --metadata-url "file://$repo/metadata/" \
    --targets-url "file://$repo/targets/" --target-name "$one")
  cmp "$work/hello.txt" "$work/tt-dl/$one"
fi
cmp "$work/hello.txt" "$work/dl/hello.txt"

echo "== P3 repository: re-sign targets, snapshot and timestamp"
if [ -n "$tuftool" ]; then
  # tough's editor takes spec_version "1.0.0" only: the same repository in that form.
  "$py" "$here/pytuf.py" tough-copy "$repo" "$work/repo-tough" "$work/py-key.pem"
  tt_sign=$(MEASURE_FRESH=$work/tt-out measure "$tuftool" update \
    --root "$repo/metadata/1.root.json" --metadata-url "file://$work/repo-tough/metadata/" \
    --key "$work/py-key.der" --outdir "$work/tt-out" \
    --targets-version 2 --targets-expires 2030-01-01T00:00:00Z \
    --snapshot-version 2 --snapshot-expires 2030-01-01T00:00:00Z \
    --timestamp-version 2 --timestamp-expires 2030-01-01T00:00:00Z)
  # What tuftool wrote verifies with tufkey (same key, same targets).
  "$tufkey" repo verify "$work/tt-out" --no-targets >/dev/null
fi
tk_rsign=$(MEASURE_PRE="'$tufkey' repo edit '$repo' targets 2>/dev/null" measure "$tufkey" repo commit "$repo")
# What tufkey published last is what python-tuf's client accepts.
"$py" "$here/pytuf.py" download "$repo" "$one" 1 >/dev/null

echo
printf '%-34s %9s %9s %9s   %9s %9s %9s   %10s %10s\n' "whole repository, $targets targets" "tufkey" "tuftool" "python" "tufkey" "tuftool" "python" "tufkey" "tuftool"
printf '%-34s %9s %9s %9s   %9s %9s %9s   %10s %10s\n' "" "wall s" "wall s" "wall s" "CPU s" "CPU s" "CPU s" "RSS KiB" "RSS KiB"
row3() {
  local tw tc tr ow oc or pw pc
  tw=$(field best_s "$2"); tc=$(field cpu_s "$2"); tr=$(field rss_kib "$2")
  ow=-; oc=-; or=-
  if [ -n "$3" ]; then
    printf -v ow %.3f "$(field best_s "$3")"; printf -v oc %.3f "$(field cpu_s "$3")"
    or=$(field rss_kib "$3")
  fi
  pw=-; pc=-
  if [ -n "$4" ]; then printf -v pw %.3f "$(field best_s "$4")"; printf -v pc %.3f "$(field cpu_s "$4")"; fi
  printf '%-34s %9.3f %9s %9s   %9.3f %9s %9s   %10s %10s\n' "$1" "$tw" "$ow" "$pw" "$tc" "$oc" "$pc" "$tr" "$or"
  if [ -n "$3" ]; then
    printf '%-34s tuftool/tufkey: %sx wall, %sx CPU (target >= 2x)\n' "" "$(ratio "$ow" "$tw")" "$(ratio "$oc" "$tc")"
  fi
  if [ -n "$4" ]; then
    printf '%-34s python/tufkey:  %sx wall, %sx CPU\n' "" "$(ratio "$pw" "$tw")" "$(ratio "$pc" "$tc")"
  fi
}
row3 "client: download 1 target" "$tk_dl" "${tt_dl:-}" "$py_dl"
row3 "sign: targets+snapshot+timestamp" "$tk_rsign" "${tt_sign:-}" ""
if [ -n "$tuftool" ]; then
  echo "tuftool: $("$tuftool" --version 2>/dev/null | head -1) ($tuftool)"
else
  echo "tuftool: not found (no TUFTOOL, none on PATH): its columns are skipped;" \
    "install it with: cargo install tuftool --no-default-features"
fi
