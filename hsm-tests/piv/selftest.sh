#!/usr/bin/env bash
# Build virtual-piv and its check example, start a card, run the check, restart
# the card on the same state and check that keys persisted, then stop.
#
#   hsm-tests/piv/selftest.sh            (from the repository root)
#
# CARGO_TARGET_DIR defaults to /tmp/vpiv-target.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/vpiv-target}

(cd "$root/hsm-tests/virtual-piv" && cargo build --bin virtual-piv --example check)
export VIRTUAL_PIV_BIN=$CARGO_TARGET_DIR/debug/virtual-piv
check=$CARGO_TARGET_DIR/debug/examples/check

state=$(mktemp -d /tmp/vpiv-selftest.XXXXXX)
trap '"$here/stop.sh" "$state"' EXIT
export VIRTUAL_PIV_CA=$state/attest-ca.pem

"$here/start.sh" "$state"
"$check"
"$here/stop.sh" "$state"
"$here/start.sh" "$state"
"$check" --persisted
