#!/usr/bin/env bash
# The README's first command as a newcomer runs it on a fresh machine: Rust, and nothing
# from apt beyond a Debian base image — no pkg-config, no libpcsclite-dev, no libpcsclite1,
# no SoftHSM. Run by hsm-tests/run.sh before it installs anything; also on its own.
#
# How the machine is made "fresh" even where the packages are installed:
#   - a build in its own, emptied target folder (every build script runs again),
#   - `pkg-config` on PATH and $PKG_CONFIG replaced by a program that fails, so
#     `pkg-config --exists libpcsclite` fails (checked below),
#   - in a private mount namespace (unshare -m), libpcsclite.so.1 replaced by an empty
#     file, so neither the linker nor the running binary can use it,
# then `cargo run --release -- demo --files` (the demo a machine without SoftHSM gets)
# must finish, the binary must not link libpcsclite, and a YubiKey command must say what
# to install.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${TUFKEY_FRESH_TARGET_DIR:-$PWD/target/fresh-machine}
rm -rf "$target"
fake=$(mktemp -d "${TMPDIR:-/tmp}/tufkey-fresh.XXXXXX")
trap 'rm -rf "$fake"' EXIT
printf '#!/bin/sh\necho "pkg-config: not installed on this fresh machine" >&2\nexit 127\n' >"$fake/pkg-config"
chmod +x "$fake/pkg-config"

cat >"$fake/inside.sh" <<'INSIDE'
set -euo pipefail
for lib in /usr/lib/*/libpcsclite.so.1 /usr/lib/*/libpcsclite.so /lib/*/libpcsclite.so.1 /usr/lib64/libpcsclite.so.1; do
  if [ -e "$lib" ]; then mount --bind /dev/null "$(readlink -f "$lib")"; echo "hidden: $lib"; fi
done
if pkg-config --exists libpcsclite; then echo "FAIL: pkg-config still finds libpcsclite" >&2; exit 1; fi
echo "pkg-config --exists libpcsclite: fails, as on a fresh machine"
cargo run --release --locked --quiet -- demo --files >"$FAKE/demo.log" 2>&1 || { cat "$FAKE/demo.log"; echo "FAIL: the demo did not finish" >&2; exit 1; }
tail -n 1 "$FAKE/demo.log"
if "$CARGO_TARGET_DIR/release/tufkey" key list yubikey: >"$FAKE/yk.log" 2>&1; then
  echo "FAIL: a YubiKey command succeeded without libpcsclite" >&2; exit 1
fi
grep -q 'libpcsclite1' "$FAKE/yk.log" || { cat "$FAKE/yk.log"; echo "FAIL: the YubiKey error does not say what to install" >&2; exit 1; }
echo "a YubiKey command without libpcsclite says: $(cat "$FAKE/yk.log")"
INSIDE

export PATH="$fake:$PATH" PKG_CONFIG="$fake/pkg-config" PKG_CONFIG_PATH= PKG_CONFIG_LIBDIR=/nonexistent \
  CARGO_TARGET_DIR="$target" FAKE="$fake"
if [ "$(id -u)" = 0 ] && unshare -m true 2>/dev/null; then
  unshare -m bash "$fake/inside.sh"
else
  # No mount namespace (not root): the library cannot be hidden, so point tufkey at a
  # library that does not exist instead; the build still runs without pkg-config.
  echo "note: no mount namespace here; hiding libpcsclite with TUFKEY_PCSC_LIBRARY instead"
  sed -i 's/^for lib in .*/for lib in; do :/' "$fake/inside.sh"
  TUFKEY_PCSC_LIBRARY=/nonexistent/libpcsclite.so.1 bash "$fake/inside.sh"
fi

if readelf -d "$target/release/tufkey" | grep NEEDED | grep -q pcsclite; then
  echo "FAIL: the tufkey binary links libpcsclite" >&2; exit 1
fi
echo "fresh machine: the default binary builds without pkg-config/libpcsclite, links no PC/SC library, and the demo runs"
