#!/usr/bin/env bash
# Issue 11, P5's second half and the daemon's memory bound: makes the bench's own
# Python venv (target/p5-venv: securesystemslib with its HSM extra, i.e. python-pkcs11,
# from PyPI) when it is missing, then runs benches/serve_batches.rs, which signs 16,384
# hashed bins through `tufkey serve` with batches and has securesystemslib's HSMSigner
# sign the same payloads on the same SoftHSM token, then loads the daemon with 64
# clients sending 1 MiB bodies. Its output is what docs/performance.md quotes.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/p5-venv
if ! "$venv/bin/python" -c 'import securesystemslib.signer, pkcs11' >/dev/null 2>&1; then
  echo "== creating $venv (securesystemslib[hsm] from PyPI)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check 'securesystemslib[hsm,crypto]>=1.1'
fi
BENCH_P5_PYTHON=$PWD/$venv/bin/python exec cargo bench --bench serve_batches "$@"
