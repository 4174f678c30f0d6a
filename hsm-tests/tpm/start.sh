#!/usr/bin/env bash
# Start a software TPM 2.0 (swtpm) with a private D-Bus session bus and a tpm2-abrmd
# resource manager in front of it, and make a tpm2-pkcs11 store on it.
#
#   hsm-tests/tpm/start.sh STATEDIR
#
# tpm2-pkcs11 needs a resource manager: without one tpm2_ptool fails with "out of
# memory for object contexts". Each STATEDIR gets its own session bus, so several
# instances (one per test) never share abrmd's D-Bus name.
#
# STATEDIR receives: tpm/ (the TPM's NV state), store/ (the tpm2-pkcs11 database),
# env (lines NAME=VALUE that a client of this TPM needs: DBUS_SESSION_BUS_ADDRESS,
# TPM2_PKCS11_TCTI, TPM2TOOLS_TCTI, TPM2_PKCS11_STORE), swtpm.log, abrmd.log and pids
# ("swtpm PID", "dbus PID", "abrmd PID" lines). Stop with hsm-tests/tpm/stop.sh STATEDIR.
# Make tokens with `tpm2_ptool addtoken --pid=1 … --path STATEDIR/store` (after sourcing
# STATEDIR/env).
#
# Environment:
#   TPM_PORT     swtpm's TPM port (its control port is TPM_PORT+1); default: a free
#                pair picked at random on 127.0.0.1
#   TPM_TIMEOUT  seconds to wait for each step (default 20)
#   TPM_ABRMD_ONLY=1  start only abrmd again (STATEDIR must hold a running swtpm and
#                bus: see `restart-abrmd.sh`)
set -euo pipefail

state=${1:?usage: start.sh STATEDIR}
timeout=${TPM_TIMEOUT:-20}

die() { echo "tpm/start.sh: $*" >&2; exit 1; }
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

for tool in swtpm dbus-daemon tpm2-abrmd tpm2_ptool; do
    command -v "$tool" >/dev/null || die "$tool is not installed; run hsm-tests/run.sh (it installs swtpm swtpm-tools tpm2-abrmd libtpm2-pkcs11-1 libtpm2-pkcs11-tools tpm2-tools libtss2-tcti-tabrmd0 dbus)"
done

mkdir -p "$state"
state=$(cd "$state" && pwd)
if [ -s "$state/pids" ] && [ "${TPM_ABRMD_ONLY:-}" != 1 ]; then
    while read -r _ pid; do
        alive "$pid" && die "$state/pids names a running process ($pid); run stop.sh $state first"
    done <"$state/pids"
    rm -f "$state/pids"
fi
mkdir -p "$state/tpm" "$state/store"

wait_for() { # wait_for WHAT PID COMMAND...
    local what=$1 pid=$2; shift 2
    local deadline=$(( $(date +%s) + timeout ))
    until "$@"; do
        alive "$pid" || die "$what exited (see $state/*.log)"
        [ "$(date +%s)" -lt "$deadline" ] || die "$what not ready within ${timeout}s"
        sleep 0.05
    done
}

start_abrmd() {
    # shellcheck disable=SC1091
    . "$state/env.sh"
    local port
    port=$(cat "$state/port")
    DBUS_SESSION_BUS_ADDRESS=$DBUS_SESSION_BUS_ADDRESS tpm2-abrmd --session --allow-root \
        --tcti="swtpm:host=127.0.0.1,port=$port" >>"$state/abrmd.log" 2>&1 &
    local pid=$!
    echo "abrmd $pid" >>"$state/pids"
    # Ready when its name is on the bus.
    wait_for tpm2-abrmd "$pid" abrmd_on_bus
}
abrmd_on_bus() {
    dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
        org.freedesktop.DBus.NameHasOwner string:com.intel.tss2.Tabrmd 2>/dev/null | grep -q 'boolean true'
}

if [ "${TPM_ABRMD_ONLY:-}" = 1 ]; then
    start_abrmd
    exit 0
fi

# swtpm on a free port pair: a random pick, tried again if another process took it.
started=
for _ in $(seq 1 20); do
    port=${TPM_PORT:-$(( 20000 + 2 * (RANDOM % 15000) ))}
    if port_open "$port" || port_open $((port + 1)); then
        [ -z "${TPM_PORT:-}" ] || die "127.0.0.1:$port or :$((port + 1)) is in use"
        continue
    fi
    rm -f "$state/swtpm.pid"
    if swtpm socket --tpm2 --tpmstate dir="$state/tpm" \
        --server type=tcp,port="$port",bindaddr=127.0.0.1 \
        --ctrl type=tcp,port=$((port + 1)),bindaddr=127.0.0.1 \
        --flags not-need-init,startup-clear --daemon --pid file="$state/swtpm.pid" \
        --log file="$state/swtpm.log" 2>>"$state/swtpm.log"; then
        started=1
        break
    fi
    [ -z "${TPM_PORT:-}" ] || die "swtpm did not start on port $port (see $state/swtpm.log)"
done
[ -n "$started" ] || die "swtpm did not start (see $state/swtpm.log)"
echo "$port" >"$state/port"
echo "swtpm $(cat "$state/swtpm.pid")" >>"$state/pids"

dbus-daemon --session --fork --nopidfile --print-address=3 --print-pid=4 \
    3>"$state/dbus.addr" 4>"$state/dbus.pid"
echo "dbus $(tr -d '\n' <"$state/dbus.pid")" >>"$state/pids"

cat >"$state/env.sh" <<ENV
export DBUS_SESSION_BUS_ADDRESS='$(tr -d '\n' <"$state/dbus.addr")'
export TPM2_PKCS11_TCTI='tabrmd:bus_type=session'
export TPM2TOOLS_TCTI='tabrmd:bus_type=session'
export TPM2_PKCS11_STORE='$state/store'
ENV
sed -e 's/^export //' -e "s/'//g" "$state/env.sh" >"$state/env"

start_abrmd
tpm2_ptool init --path "$state/store" >"$state/ptool.log" 2>&1 || {
    cat "$state/ptool.log" >&2
    die "tpm2_ptool init failed"
}
echo "tpm/start.sh: swtpm on 127.0.0.1:$port, abrmd on bus $(tr -d '\n' <"$state/dbus.addr"), store $state/store"
