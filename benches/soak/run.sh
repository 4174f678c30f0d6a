#!/usr/bin/env bash
# The daemon soak of issue 13 (not a CI test): builds the release daemon and the driver
# (benches/soak/main.rs), runs it for SOAK_SECONDS (default 600) and keeps the whole
# output in a log file. Exit status: the driver's (1 when a check failed).
#
#   benches/soak/run.sh                    # 10 minutes, 64 clients
#   SOAK_SECONDS=60 benches/soak/run.sh    # a quick check
#
# The other knobs (SOAK_CLIENTS, SOAK_TOKEN_OUT, SOAK_PG_DOWN, …) are described at the
# top of benches/soak/main.rs. Needs softhsm2 and postgresql (hsm-tests/run.sh installs
# them). Runs under `nice -n ${SOAK_NICE:-10}` so that it never slows down a benchmark
# measured on the same machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p target
log=${SOAK_LOG:-target/soak-$(date -u +%Y%m%dT%H%M%SZ).log}
export SOAK_SECONDS=${SOAK_SECONDS:-600}
nice_level=${SOAK_NICE:-10}
# The daemon runs as docs/signer.md deploys it (systemd unit, container): glibc's malloc
# with one arena. SOAK_MALLOC_ARENA_MAX=N sets another count; SOAK_MALLOC_ARENA_MAX= (empty)
# leaves glibc's default (docs/performance.md, "Soak": memory then rises at each outage).
arena=${SOAK_MALLOC_ARENA_MAX-1}
if [ -n "$arena" ]; then export MALLOC_ARENA_MAX=$arena; else unset MALLOC_ARENA_MAX; fi
{
  echo "soak: started $(date -u +%FT%TZ); SOAK_SECONDS=$SOAK_SECONDS; MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-(glibc default)}; uptime: $(uptime)"
  echo "soak: $(git rev-parse --short HEAD 2>/dev/null || echo '?') $(git status --porcelain 2>/dev/null | grep -q . && echo '(with local changes)')"
} | tee "$log"
nice -n "$nice_level" cargo bench --bench soak --no-run 2>&1 | tail -n 3 | tee -a "$log"
set +e
nice -n "$nice_level" cargo bench --bench soak 2>&1 | tee -a "$log"
status=${PIPESTATUS[0]}
set -e
echo "soak: finished $(date -u +%FT%TZ); exit $status; uptime: $(uptime); log: $log" | tee -a "$log"
exit "$status"
