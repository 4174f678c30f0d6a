#!/usr/bin/env bash
# The whole test suite, on a fresh machine as on a developer's:
#   1. installs what the tests need when it is missing (Debian packages softhsm2 and
#      opensc; a Python venv in target/interop-venv with python-tuf from PyPI),
#   2. checks formatting and clippy,
#   3. runs every test: unit tests, SoftHSM tests through the real module, python-tuf
#      interop and the real-world repositories in ../shared/interop/realworld.
# Tokens are throwaway: each test makes its own SoftHSM folder (softhsm-config/new-token.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
command -v softhsm2-util >/dev/null 2>&1 || missing+=(softhsm2)
command -v pkcs11-tool >/dev/null 2>&1 || missing+=(opensc)
command -v keyctl >/dev/null 2>&1 || missing+=(keyutils)
# The YubiKey backend (default feature) links libpcsclite.
pkg-config --exists libpcsclite 2>/dev/null || missing+=(libpcsclite-dev pkg-config)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
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

say "cargo test (unit, SoftHSM, python-tuf interop, real-world repositories)"
cargo test
