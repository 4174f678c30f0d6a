#!/usr/bin/env bash
# The whole test suite, on a fresh machine as on a developer's:
#   0. checks the README's first command on a fresh machine (hsm-tests/fresh-machine.sh:
#      builds and runs the demo with no pkg-config and libpcsclite hidden),
#   1. installs what the tests need when it is missing (Debian packages softhsm2, opensc,
#      keyutils, pcscd, vsmartcard-vpcd, libpcsclite1, libclang-dev, yubico-piv-tool, faketime,
#      postgresql (the replica tests start their own throwaway server), swtpm, swtpm-tools,
#      tpm2-abrmd, tpm2-tools, libtpm2-pkcs11-1/-tools, dbus (each TPM test starts its own);
#      a Python venv in target/interop-venv with python-tuf from PyPI),
#   2. checks formatting and clippy (the fuzz crate too), runs each fuzz target ~15 s,
#   3. starts a private pcscd with the virtual YubiKey (hsm-tests/virtual-piv), runs every test:
#      unit tests, SoftHSM tests through the real module, YubiKey tests through pcscd,
#      python-tuf interop and the real-world repositories in ../shared/interop/realworld,
#      and stops pcscd and the card by PID.
# Tokens are throwaway: each test makes its own SoftHSM folder (softhsm-config/new-token.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

say "the README's first command on a fresh machine (no pkg-config, no libpcsclite)"
hsm-tests/fresh-machine.sh

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

venv=target/interop-venv
if ! "$venv/bin/python" -c 'import tuf, cryptography' >/dev/null 2>&1; then
  say "creating $venv with python-tuf from PyPI"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check 'tuf>=6,<8' 'securesystemslib[crypto]>=1.1'
fi
export TUFKEY_TEST_PYTHON=$PWD/$venv/bin/python
"$TUFKEY_TEST_PYTHON" -c 'import tuf, securesystemslib; print("python-tuf", tuf.__version__, "securesystemslib", securesystemslib.__version__)'

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings
cargo clippy -p pcsc-sys --all-targets --quiet -- -D warnings
cargo clippy -p tufkey-fuzz --all-targets --quiet -- -D warnings

say "no import circle between files of src/ (hsm-tests/import-cycles.py)"
python3 hsm-tests/import-cycles.py

say "building the tough client (hsm-tests/tough-client: a second TUF client for the interop tests)"
cargo build --quiet -p tough-client

say "starting the virtual YubiKey (pcscd + virtual-piv on a private reader config)"
cargo build --quiet -p virtual-piv
piv_state=$(mktemp -d "${TMPDIR:-/tmp}/tufkey-piv.XXXXXX")
stop_card() { hsm-tests/piv/stop.sh "$piv_state" || true; rm -rf "$piv_state"; }
trap stop_card EXIT
if VIRTUAL_PIV_BIN=$PWD/target/debug/virtual-piv hsm-tests/piv/start.sh "$piv_state"; then
  export TUFKEY_TEST_PIV_CA=$piv_state/attest-ca.pem
else
  # The YubiKey tests then say why they skip; under CI=true they fail instead.
  echo "note: the virtual YubiKey could not start (see above); YubiKey tests will be skipped" >&2
  sed -n '1,40p' "$piv_state"/*.log 2>/dev/null >&2 || true
fi

say "cargo test -p pcsc-sys (the PC/SC bindings loaded at run time)"
cargo test -p pcsc-sys --quiet

# The fuzz targets' instrumented build is long and CPU-bound while the tests mostly wait on
# tokens, daemons and python-tuf: it runs beside them, in its own target folder (so neither
# waits for the other's lock), and is stopped by PID if the tests fail.
say "building the fuzz targets in the background (hsm-tests/fuzz-smoke.sh --build-only)"
fuzz_log=$PWD/target/fuzz-build.log
CARGO_TARGET_DIR=$PWD/target/fuzz-build setsid hsm-tests/fuzz-smoke.sh --build-only >"$fuzz_log" 2>&1 &
fuzz_build=$!
# setsid: the build is its own process group, so stopping it stops cargo and rustc too.
stop_all() { kill -- -"$fuzz_build" 2>/dev/null || true; stop_card; }
trap stop_all EXIT

say "cargo test (unit, SoftHSM, TPM 2.0 token, YubiKey, python-tuf interop, real-world repositories)"
cargo test

say "fuzz smoke runs (hsm-tests/fuzz-smoke.sh: every fuzz target briefly from its seeds)"
if ! wait "$fuzz_build"; then
  cat "$fuzz_log" >&2
  echo "building the fuzz targets failed" >&2
  exit 1
fi
cat "$fuzz_log"
CARGO_TARGET_DIR=$PWD/target/fuzz-build hsm-tests/fuzz-smoke.sh --run-only
