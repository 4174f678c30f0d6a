#!/usr/bin/env bash
# Stop what hsm-tests/tpm/start.sh STATEDIR started, by PID: abrmd, the bus, swtpm.
#   hsm-tests/tpm/stop.sh STATEDIR [NAME]   (NAME: stop only that one, e.g. abrmd)
# Keeps STATEDIR (TPM state, store, logs); remove it yourself when done.
set -uo pipefail

state=${1:?usage: stop.sh STATEDIR [NAME]}
only=${2:-}
pids="$state/pids"
[ -f "$pids" ] || exit 0

alive() {
    kill -0 "$1" 2>/dev/null || return 1
    [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

# Reverse order of start: the resource manager first, swtpm last.
tac "$pids" | while read -r name pid; do
    [ -n "${pid:-}" ] || continue
    [ -z "$only" ] || [ "$name" = "$only" ] || continue
    alive "$pid" || continue
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 100); do
        alive "$pid" || break
        sleep 0.05
    done
    if alive "$pid"; then
        echo "tpm/stop.sh: $name ($pid) ignored SIGTERM; sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null
    fi
done
if [ -n "$only" ]; then
    grep -v "^$only " "$pids" >"$pids.new" || true
    mv "$pids.new" "$pids"
else
    rm -f "$pids"
fi
