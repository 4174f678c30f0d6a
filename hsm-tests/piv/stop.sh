#!/usr/bin/env bash
# Stop what start.sh STATEDIR started: the card, then pcscd, by their PIDs.
# Keeps STATEDIR (card state, CA, logs); remove it yourself when done.
set -uo pipefail

state=${1:?usage: stop.sh STATEDIR}
pids="$state/pids"
[ -f "$pids" ] || exit 0

# Alive and not a zombie (a crashed card whose parent does not reap it).
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

# Card first (so pcscd sees it removed), then pcscd; reverse order of start.
tac "$pids" | while read -r name pid; do
    [ -n "${pid:-}" ] || continue
    alive "$pid" || continue
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 100); do
        alive "$pid" || break
        sleep 0.05
    done
    if alive "$pid"; then
        echo "stop.sh: $name ($pid) ignored SIGTERM; sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null
    fi
done
rm -f "$pids"
