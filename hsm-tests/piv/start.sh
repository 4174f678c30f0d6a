#!/usr/bin/env bash
# Start a private pcscd with a vpcd reader and plug the virtual YubiKey into it.
#
#   VIRTUAL_PIV_BIN=/path/to/virtual-piv hsm-tests/piv/start.sh STATEDIR
#
# STATEDIR receives: reader.conf.d/ (pcscd's reader config), card/ (the card's
# persistent state; card/power.txt counts the resets and power-offs pcscd sent it
# since this start, see hsm-tests/virtual-piv/README.md), attest-ca.pem (the attestation root CA to trust),
# pcscd.log, virtual-piv.log, and pids ("pcscd PID" and "card PID" lines).
# Stop with hsm-tests/piv/stop.sh STATEDIR. A STATEDIR whose card/ exists keeps
# its keys, PIN and CA across a stop and start.
#
# Environment:
#   VIRTUAL_PIV_BIN     the built runner (required)
#   VIRTUAL_PIV_SERIAL  serial number the card reports (default 5437251)
#   VIRTUAL_PIV_PORT    vpcd TCP port (default 35963)
#   VIRTUAL_PIV_TIMEOUT seconds to wait for each step (default 30)
#   VIRTUAL_PIV_FIRMWARE, VIRTUAL_PIV_MGM_ALG, VIRTUAL_PIV_MGM_KEY,
#   VIRTUAL_PIV_MGM_PROTECTED, VIRTUAL_PIV_GENERIC
#                       read by the card itself (see `virtual-piv --help`), e.g.
#                       VIRTUAL_PIV_GENERIC=1 for a generic SP 800-73-4 card (no GET
#                       METADATA, no ATTEST, the PIN kept verified across SELECT), or
#                       VIRTUAL_PIV_FIRMWARE=5.7.1 for a YubiKey 5.7 with an AES-192
#                       default management key (default: 5.4.3, 3DES)
#
# The vpcd reader has a second slot ("... 00 01") listening on port+1: a second card
# (e.g. `virtual-piv --port 35964 --serial 5437252 --firmware 5.7.1`, as
# hsm-tests/yubikey.rs starts one) plugs into the same pcscd.
#
# pcscd listens on the fixed socket /run/pcscd/pcscd.comm, so only one pcscd
# can run at a time: this script refuses to start if another one is alive
# (stop a system one first, e.g. `systemctl stop pcscd.socket pcscd`).
set -euo pipefail

state=${1:?usage: start.sh STATEDIR}
bin=${VIRTUAL_PIV_BIN:?set VIRTUAL_PIV_BIN to the virtual-piv binary}
serial=${VIRTUAL_PIV_SERIAL:-5437251}
port=${VIRTUAL_PIV_PORT:-35963}
timeout=${VIRTUAL_PIV_TIMEOUT:-30}

die() { echo "start.sh: $*" >&2; exit 1; }
# Alive and not a zombie.
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

[ -x "$bin" ] || die "VIRTUAL_PIV_BIN=$bin is not an executable"
command -v pcscd >/dev/null || die "pcscd not installed (apt-get install pcscd vsmartcard-vpcd)"

driver=$(dpkg -L vsmartcard-vpcd 2>/dev/null | grep -E '/libifdvpcd\.so$' | head -n1 || true)
[ -n "$driver" ] || driver=/usr/lib/pcsc/drivers/serial/libifdvpcd.so
[ -e "$driver" ] || die "vpcd driver not found (apt-get install vsmartcard-vpcd)"

mkdir -p "$state"
state=$(cd "$state" && pwd)
if [ -s "$state/pids" ]; then
    while read -r _ pid; do
        if alive "$pid"; then
            die "$state/pids names a running process ($pid); run stop.sh $state first"
        fi
    done <"$state/pids"
    rm -f "$state/pids"
fi

# Another pcscd owns /run/pcscd? Refuse; clear the leftovers of a dead one.
if [ -e /run/pcscd/pcscd.pid ]; then
    other=$(cat /run/pcscd/pcscd.pid 2>/dev/null || true)
    if [ -n "$other" ] && alive "$other"; then
        die "a pcscd (pid $other) is already running; stop it first"
    fi
fi
for other in $(pgrep -x pcscd || true); do
    if alive "$other"; then die "a pcscd (pid $other) is already running; stop it first"; fi
done
rm -f /run/pcscd/pcscd.comm /run/pcscd/pcscd.pid
mkdir -p /run/pcscd

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if port_open "$port"; then
    die "something already listens on 127.0.0.1:$port"
fi

hexport=$(printf '0x%04X' "$port")
mkdir -p "$state/reader.conf.d"
cat >"$state/reader.conf.d/virtual-piv" <<EOF
# Written by hsm-tests/piv/start.sh. "Yubico YubiKey" in the name makes
# ykcs11 and yubico-piv-tool treat the reader as a YubiKey.
FRIENDLYNAME "Yubico YubiKey virtual-piv"
DEVICENAME   /dev/null:$hexport
LIBPATH      $driver
CHANNELID    $hexport
EOF

pcscd_args=(--foreground -c "$state/reader.conf.d")
if pcscd --help 2>&1 | grep -q -- --disable-polkit; then
    pcscd_args+=(--disable-polkit)
fi

t0=$(date +%s.%N)
pcscd "${pcscd_args[@]}" >"$state/pcscd.log" 2>&1 &
pcscd_pid=$!
echo "pcscd $pcscd_pid" >"$state/pids"

deadline=$(( $(date +%s) + timeout ))
until port_open "$port"; do
    alive "$pcscd_pid" || { cat "$state/pcscd.log" >&2; die "pcscd exited"; }
    [ "$(date +%s)" -lt "$deadline" ] || { kill "$pcscd_pid"; die "vpcd did not listen on $port"; }
    sleep 0.05
done

mkdir -p "$state/card"
"$bin" --port "$port" --state "$state/card" --serial "$serial" \
    --ca-out "$state/attest-ca.pem" >"$state/virtual-piv.log" 2>&1 &
card_pid=$!
echo "card $card_pid" >>"$state/pids"

# Wait until pcscd reports a card in the reader.
card_present() {
    if command -v opensc-tool >/dev/null; then
        opensc-tool --list-readers 2>/dev/null | grep -E '^[0-9]+ +Yes +.*virtual-piv' >/dev/null
    else
        local out
        out=$(timeout 2 pcsc_scan -c -n 2>/dev/null || true)
        awk '/Reader .*virtual-piv 00 00/ {f = 1; next} /Reader / {f = 0}
             f && /Card inserted/ {found = 1} END {exit !found}' <<<"$out"
    fi
}
until card_present; do
    for p in "$pcscd_pid" "$card_pid"; do
        alive "$p" || {
            tail -n 20 "$state/virtual-piv.log" "$state/pcscd.log" >&2
            "$(dirname "$0")/stop.sh" "$state" || true
            die "process $p exited before the card was inserted"
        }
    done
    if [ "$(date +%s)" -ge "$deadline" ]; then
        "$(dirname "$0")/stop.sh" "$state" || true
        die "the card was not inserted within ${timeout}s"
    fi
    sleep 0.05
done
t1=$(date +%s.%N)
printf 'start.sh: virtual YubiKey (serial %s) ready in %.2fs; pcscd %s, card %s; CA %s\n' \
    "$serial" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" "$pcscd_pid" "$card_pid" "$state/attest-ca.pem"
