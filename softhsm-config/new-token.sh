#!/usr/bin/env bash
# Creates a throwaway SoftHSM token in a private folder, never the system's.
#
#   softhsm-config/new-token.sh DIR LABEL PIN [SO_PIN]
#
# DIR gets softhsm2.conf (from softhsm2.conf.in) and tokens/. Prints the config path;
# use it as SOFTHSM2_CONF for every process that opens the module. Several tokens can
# share one DIR.
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 DIR LABEL PIN [SO_PIN]" >&2
  exit 2
fi
dir=$1 label=$2 pin=$3 so_pin=${4:-so-$3}
here=$(cd "$(dirname "$0")" && pwd)
command -v softhsm2-util >/dev/null || { echo "softhsm2-util not found: apt-get install softhsm2 (or run hsm-tests/run.sh)" >&2; exit 1; }
mkdir -p "$dir/tokens"
dir=$(cd "$dir" && pwd)
conf=$dir/softhsm2.conf
if [ ! -f "$conf" ]; then
  sed "s|@TOKENDIR@|$dir/tokens|" "$here/softhsm2.conf.in" > "$conf"
fi
SOFTHSM2_CONF=$conf softhsm2-util --init-token --free --label "$label" --pin "$pin" --so-pin "$so_pin" >/dev/null
echo "$conf"
