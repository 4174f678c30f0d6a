#!/usr/bin/env bash
# Debian packages the virtual YubiKey needs (run as root). Build: libpcsclite-dev,
# pkg-config, libclang-dev (bindgen for littlefs2-sys). Run: pcscd and the vpcd
# reader driver; opensc (opensc-tool, used by start.sh to see the card) and
# yubico-piv-tool / ykcs11 for cross-checks.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    pcscd vsmartcard-vpcd libpcsclite-dev pkg-config libclang-dev \
    opensc pcsc-tools yubico-piv-tool ykcs11
