#!/usr/bin/env bash
# The whole test suite, on a fresh machine as on a developer's:
#   1. installs what the tests need when it is missing (Debian packages softhsm2, opensc,
#      keyutils, pcscd, vsmartcard-vpcd, libpcsclite1, libclang-dev, yubico-piv-tool, faketime,
#      postgresql (the replica tests start their own throwaway server), swtpm, swtpm-tools,
#      tpm2-abrmd, tpm2-tools, libtpm2-pkcs11-1/-tools, dbus (each TPM test starts its own);
#      a Python venv in target/interop-venv with python-tuf from PyPI),
#   2. in the background (niced, so they take the CPU the steps below leave idle): the README's
#      first command on a fresh machine (hsm-tests/fresh-machine.sh: builds and runs the demo
#      with no pkg-config and libpcsclite hidden) and the fuzz targets' instrumented build,
#   3. checks formatting and clippy (the fuzz crate too), builds the tests and the test tools,
#   4. starts a private pcscd with the virtual YubiKey (hsm-tests/virtual-piv) and runs every
#      test in two lanes at once: the test files that use the card (they read
#      TUFKEY_TEST_PIV_CA) one after another in one lane, all other tests (unit, SoftHSM,
#      TPM 2.0 token, python-tuf interop, the real-world repositories in
#      ../shared/interop/realworld) in the other; then stops pcscd and the card by PID,
#   5. runs each fuzz target ~15 s, two at a time.
# Every step prints the seconds since the start; a table of the steps (wall seconds and the
# CPU seconds of its processes) ends the output, also when a step fails (docs/testing.md,
# "CI time").
# Tokens are throwaway: each test makes its own SoftHSM folder (softhsm-config/new-token.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

# ---- step times ---------------------------------------------------------------------------
# Each `say` ends the step before it and starts a new one. CPU is what the step's finished
# processes used (user + system, from /proc: the shell's reaped children), so a loaded
# machine shows up as wall >> CPU/2. Background jobs get a row of their own (bg_start/bg_wait).
run_t0=$(date +%s)
clk_tck=$(getconf CLK_TCK)
rows=()
step_name='' step_t0=0 step_c0=0
elapsed() { echo $(($(date +%s) - run_t0)); }
children_cpu() { awk '{print $16 + $17}' "/proc/$$/stat"; }
end_step() {
  [ -n "$step_name" ] || return 0
  local cpu=$((($(children_cpu) - step_c0) / clk_tck))
  rows+=("$(printf '%6s %6s %6s  %s' "+$step_t0" "$(($(elapsed) - step_t0))" "$cpu" "$step_name")")
  step_name=''
}
say() {
  end_step
  step_name=$1 step_t0=$(elapsed) step_c0=$(children_cpu)
  printf '\n== [%ss] %s\n' "$step_t0" "$*"
}
table() {
  end_step
  printf '\n== step times (s): start, wall, CPU; "bg" rows ran beside the others; total %s s\n' "$(elapsed)"
  printf '%6s %6s %6s  %s\n' start wall CPU step
  printf '%s\n' "${rows[@]}"
}

# bg_start NICENESS NAME LOG CMD…: CMD in the background in its own process group (so
# stopping it stops cargo and rustc too); its start, wall and CPU seconds go to LOG.times.
bg_pids=()
bg_start() {
  local niceness=$1 name=$2 log=$3
  shift 3
  printf '   (in the background: %s; log %s)\n' "$name" "$log"
  # setsid: the job's PID is its process group. Its CPU: the user + system ticks of its
  # finished children (fields 16 and 17 of /proc/PID/stat).
  setsid bash -c 'log=$1 t0=$2 n=$3; shift 3; nice -n "$n" "$@"; rc=$?
    read -r -a st <"/proc/$$/stat"; echo "$t0 $(($(date +%s) - t0)) $((st[15] + st[16]))" >"$log.times"
    exit $rc' \
    bg "$log" "$(date +%s)" "$niceness" "$@" >"$log" 2>&1 </dev/null &
  bg_pids+=($!)
}
# bg_wait PID NAME LOG: waits for a bg_start job; adds its row; returns its exit code.
bg_wait() {
  local pid=$1 name=$2 log=$3 rc=0 p keep=()
  wait "$pid" || rc=$?
  for p in "${bg_pids[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
  bg_pids=("${keep[@]}")
  if [ -s "$log.times" ]; then
    local t0 wall ticks
    read -r t0 wall ticks <"$log.times"
    rows+=("$(printf '%6s %6s %6s  %s' "+$((t0 - run_t0))" "$wall" "$((ticks / clk_tck))" \
      "bg: $name (exit $rc)")")
  fi
  return "$rc"
}
stop_bg() { local p; for p in "${bg_pids[@]}"; do kill -- -"$p" 2>/dev/null || true; done; }

on_exit() {
  local rc=$?
  stop_bg
  [ -n "${piv_state:-}" ] && { hsm-tests/piv/stop.sh "$piv_state" || true; rm -rf "$piv_state"; }
  table
  exit "$rc"
}
trap on_exit EXIT

# ---- 1. what the tests need ---------------------------------------------------------------

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
command -v softhsm2-util >/dev/null 2>&1 || missing+=(softhsm2)
command -v pkcs11-tool >/dev/null 2>&1 || missing+=(opensc)
command -v keyctl >/dev/null 2>&1 || missing+=(keyutils)
# The YubiKey backend opens libpcsclite at run time (nothing to build against).
compgen -G '/usr/lib/*/libpcsclite.so.1' >/dev/null || missing+=(libpcsclite1)
# The virtual YubiKey: pcscd with the vpcd reader driver; the card's build needs libclang
# (bindgen); yubico-piv-tool cross-checks PIN counters independently of tufkey.
command -v pcscd >/dev/null 2>&1 || missing+=(pcscd)
dpkg -s vsmartcard-vpcd >/dev/null 2>&1 || missing+=(vsmartcard-vpcd)
dpkg -s libclang-dev >/dev/null 2>&1 || missing+=(libclang-dev)
command -v yubico-piv-tool >/dev/null 2>&1 || missing+=(yubico-piv-tool)
# The real-world repositories are read by the test clients at their own (past) time.
command -v faketime >/dev/null 2>&1 || missing+=(faketime)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
# The replica tests start their own throwaway PostgreSQL server (never the system cluster).
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
# The TPM 2.0 token tests (hsm-tests/tpm.rs): tpm2-pkcs11 on swtpm behind tpm2-abrmd on a
# private D-Bus session bus, one per test (hsm-tests/tpm/start.sh, stopped by PID).
command -v swtpm >/dev/null 2>&1 || missing+=(swtpm)
command -v swtpm_setup >/dev/null 2>&1 || missing+=(swtpm-tools)
command -v tpm2-abrmd >/dev/null 2>&1 || missing+=(tpm2-abrmd)
command -v tpm2_getcap >/dev/null 2>&1 || missing+=(tpm2-tools)
command -v tpm2_ptool >/dev/null 2>&1 || missing+=(libtpm2-pkcs11-tools)
compgen -G '/usr/lib/*/pkcs11/libtpm2_pkcs11.so' >/dev/null || missing+=(libtpm2-pkcs11-1)
compgen -G '/usr/lib/*/libtss2-tcti-tabrmd.so.0' >/dev/null || missing+=(libtss2-tcti-tabrmd0)
command -v dbus-daemon >/dev/null 2>&1 || missing+=(dbus-daemon)
command -v dbus-send >/dev/null 2>&1 || missing+=(dbus-bin)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ---- 2. the long builds, in the background -------------------------------------------------
# Both are CPU-bound and in target folders of their own (so they never wait for the lock on
# target/); niced, they take what the steps below leave idle (cargo's serial phases, the tests
# waiting on tokens, daemons and python-tuf) and yield the rest. Both start after the packages
# are installed: fresh-machine.sh hides libpcsclite and pkg-config itself, so it still proves
# that a machine without them builds and runs the demo.
mkdir -p target
say "background: the README's first command on a fresh machine; the fuzz targets' build"
fresh_log=$PWD/target/fresh-machine.log
bg_start 10 "the README's first command on a fresh machine (hsm-tests/fresh-machine.sh)" "$fresh_log" \
  hsm-tests/fresh-machine.sh
fresh_job=${bg_pids[-1]}
fuzz_log=$PWD/target/fuzz-build.log
# Coverage instrumentation only for this workspace's crates (hsm-tests/fuzz-rustc-wrapper.sh),
# so in a folder of its own: target/fuzz-smoke, never the fully instrumented target/fuzz-build.
fuzz_target_dir=$PWD/target/fuzz-smoke
bg_start 10 "building the fuzz targets (hsm-tests/fuzz-smoke.sh --build-only)" "$fuzz_log" \
  env CARGO_TARGET_DIR="$fuzz_target_dir" RUSTC_WRAPPER="$PWD/hsm-tests/fuzz-rustc-wrapper.sh" \
  hsm-tests/fuzz-smoke.sh --build-only
fuzz_job=${bg_pids[-1]}

venv=target/interop-venv
if ! "$venv/bin/python" -c 'import tuf, cryptography' >/dev/null 2>&1; then
  say "creating $venv with python-tuf from PyPI"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check 'tuf>=6,<8' 'securesystemslib[crypto]>=1.1'
fi
export TUFKEY_TEST_PYTHON=$PWD/$venv/bin/python
"$TUFKEY_TEST_PYTHON" -c 'import tuf, securesystemslib; print("python-tuf", tuf.__version__, "securesystemslib", securesystemslib.__version__)'

# ---- 3. checks and builds ------------------------------------------------------------------

say "cargo fmt --check"
cargo fmt --all -- --check

say "no import circle between files of src/ (hsm-tests/import-cycles.py)"
python3 hsm-tests/import-cycles.py

say "cargo clippy --all-targets -- -D warnings (tufkey, pcsc-sys, the fuzz crate)"
cargo clippy --all-targets --quiet -- -D warnings
cargo clippy -p pcsc-sys --all-targets --quiet -- -D warnings
cargo clippy -p tufkey-fuzz --all-targets --quiet -- -D warnings

say "building the tests (cargo test --no-run)"
cargo test --no-run --quiet

say "building the test tools: the tough client (a second TUF client) and the virtual YubiKey"
cargo build --quiet -p tough-client -p virtual-piv

say "cargo test -p pcsc-sys (the PC/SC bindings loaded at run time)"
cargo test -p pcsc-sys --quiet

say "starting the virtual YubiKey (pcscd + virtual-piv on a private reader config)"
piv_state=$(mktemp -d "${TMPDIR:-/tmp}/tufkey-piv.XXXXXX")
if VIRTUAL_PIV_BIN=$PWD/target/debug/virtual-piv hsm-tests/piv/start.sh "$piv_state"; then
  export TUFKEY_TEST_PIV_CA=$piv_state/attest-ca.pem
else
  # The YubiKey tests then say why they skip; under CI=true they fail instead.
  echo "note: the virtual YubiKey could not start (see above); YubiKey tests will be skipped" >&2
  sed -n '1,40p' "$piv_state"/*.log 2>/dev/null >&2 || true
fi

# ---- 4. the tests, in two lanes ------------------------------------------------------------
# There is one card: every test file that uses it (it reads TUFKEY_TEST_PIV_CA) runs in the
# card lane, one file after another. Everything else has resources of its own (a SoftHSM
# folder, a swtpm on a random free port pair, a PostgreSQL on a free port, daemons on port 0)
# and runs in the other lane at the same time. Both lanes run to the end (--no-fail-fast);
# the card lane's output follows the other's.
card_tests=() other_tests=()
while read -r name path; do
  if grep -q TUFKEY_TEST_PIV_CA "$path"; then card_tests+=(--test "$name"); else other_tests+=(--test "$name"); fi
done < <(cargo metadata --no-deps --format-version 1 | python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "tufkey":
        for t in p["targets"]:
            if "test" in t["kind"]:
                print(t["name"], t["src_path"])')
[ ${#card_tests[@]} -gt 0 ] || { echo "no test file reads TUFKEY_TEST_PIV_CA: hsm-tests/run.sh's card lane is empty (is hsm-tests/yubikey.rs gone?)" >&2; exit 1; }

say "cargo test, card lane in the background: ${card_tests[*]}"
card_log=$PWD/target/test-card-lane.log
bg_start 0 "the card lane" "$card_log" cargo test --no-fail-fast "${card_tests[@]}"
card_job=${bg_pids[-1]}

say "cargo test, the other lane: unit tests, SoftHSM, TPM 2.0 token, python-tuf interop, real-world repositories"
lane_rc=0
cargo test --no-fail-fast --lib --bins "${other_tests[@]}" || lane_rc=$?
cargo test --doc || lane_rc=$?

say "waiting for the card lane (YubiKey tests and the other files that use the card)"
card_rc=0
bg_wait "$card_job" "card lane: cargo test ${card_tests[*]}" "$card_log" || card_rc=$?
cat "$card_log"
piv_dir=$piv_state piv_state=''
hsm-tests/piv/stop.sh "$piv_dir" || true
rm -rf "$piv_dir"
if [ "$lane_rc" != 0 ] || [ "$card_rc" != 0 ]; then
  echo >&2
  [ "$lane_rc" = 0 ] || echo "FAILED: cargo test, the other lane, exit $lane_rc (failing tests above, under \"failures:\")" >&2
  [ "$card_rc" = 0 ] || echo "FAILED: cargo test, the card lane (${card_tests[*]}), exit $card_rc; failing tests: $(grep -E '^test .* FAILED$' "$card_log" | sed 's/^test //; s/ \.\.\. FAILED$//' | tr '\n' ' ')" >&2
  exit 1
fi

# ---- 5. the fuzz smoke runs ----------------------------------------------------------------

say "waiting for the background builds"
fresh_rc=0
bg_wait "$fresh_job" "the README's first command on a fresh machine" "$fresh_log" || fresh_rc=$?
cat "$fresh_log"
[ "$fresh_rc" = 0 ] || { echo "FAILED: hsm-tests/fresh-machine.sh, exit $fresh_rc (its log above)" >&2; exit 1; }
fuzz_rc=0
bg_wait "$fuzz_job" "building the fuzz targets" "$fuzz_log" || fuzz_rc=$?
cat "$fuzz_log"
[ "$fuzz_rc" = 0 ] || { echo "FAILED: building the fuzz targets, exit $fuzz_rc (its log above)" >&2; exit 1; }

say "fuzz smoke runs (hsm-tests/fuzz-smoke.sh: every fuzz target briefly from its seeds, two at a time)"
mapfile -t fuzz_targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^tufkey-fuzz$')
half=$(((${#fuzz_targets[@]} + 1) / 2))
smoke_log=$PWD/target/fuzz-smoke-2.log
CARGO_TARGET_DIR=$fuzz_target_dir hsm-tests/fuzz-smoke.sh --run-only "${fuzz_targets[@]:$half}" >"$smoke_log" 2>&1 &
smoke_job=$!
smoke_rc=0
CARGO_TARGET_DIR=$fuzz_target_dir hsm-tests/fuzz-smoke.sh --run-only "${fuzz_targets[@]:0:$half}" || smoke_rc=$?
wait "$smoke_job" || smoke_rc=$?
cat "$smoke_log"
[ "$smoke_rc" = 0 ] || { echo "FAILED: the fuzz smoke runs (above)" >&2; exit 1; }
echo "all steps passed"
