#!/usr/bin/env bash
# Where the signer daemon's own CPU goes per single-document `POST /v1/sign` (issue 11, P2),
# counted in a way that a loaded machine does not change: instructions (callgrind),
# system calls and context switches (perf software counters), per request.
#
#   benches/daemon-profile.sh                 # 400 requests at one client
#   PROFILE_REQUESTS=1000 PROFILE_CLIENTS=4 benches/daemon-profile.sh
#
# It makes a throwaway SoftHSM token with one P-256 key, a CA with a server and a
# client certificate (openssl), a signer.toml like benches/daemon.rs's, and starts the
# real daemon twice:
#
#   1. natively, with `perf stat -e raw_syscalls:sys_enter,context-switches,task-clock`
#      attached only while the measured requests run: syscalls and context switches per
#      request (task-clock too, but that one moves with the load);
#   2. under `valgrind --tool=callgrind`: the counters are dumped after the warm-up and
#      again after the measured requests (`callgrind_control --dump`), so the second dump
#      holds those requests only. Printed: instructions per request in all, inside
#      `tufkey::keys::sign_checked` (the HSM call and the self-check, which P2 leaves
#      out), the rest, the rest by area (TLS, HTTP, JSON, audit, ...), and the top
#      functions by their own instructions.
#
# The clients (Python's ssl + http.client, one keep-alive mutual-TLS connection each)
# send the bench's timestamp document with increasing versions, as benches/daemon.rs
# does. Environment: PROFILE_REQUESTS (default 400), PROFILE_WARMUP (50),
# PROFILE_CLIENTS (1), PROFILE_BATCH=N (each request a `POST /v1/sign-batch` of N documents;
# the figures are then per signature), PROFILE_TOP (25 functions), PROFILE_KEEP=1 keeps the work folder
# (callgrind.out.* for callgrind_annotate / kcachegrind), PROFILE_STRACE=1 adds a pass
# under `strace -c` (which system calls), PROFILE_PERF_RECORD=1 a native `perf record -g`
# pass (where the CPU time goes, kernel included; perf.data is kept with PROFILE_KEEP=1), PROFILE_CALLGRIND=0 leaves callgrind out, TUFKEY_BIN (default
# target/release/tufkey: build it with `cargo build --release`; a debug build's counts
# say little about the release one). Needs valgrind, perf, openssl, python3, softhsm2.
# Takes about a minute per 400 requests (callgrind runs the daemon ~50x slower).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bin=${TUFKEY_BIN:-$here/target/release/tufkey}
n=${PROFILE_REQUESTS:-400}
warm=${PROFILE_WARMUP:-50}
clients=${PROFILE_CLIENTS:-1}
top=${PROFILE_TOP:-25}
for tool in valgrind callgrind_control perf openssl python3 softhsm2-util; do
  command -v "$tool" >/dev/null || { echo "daemon-profile: $tool not found" >&2; exit 1; }
done
[ -x "$bin" ] || { echo "daemon-profile: no daemon binary at $bin (cargo build --release, or set TUFKEY_BIN)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/daemon-profile.XXXXXX")
daemon_pid=
cleanup() {
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -TERM "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  if [ "${PROFILE_KEEP:-0}" = 1 ]; then
    echo "daemon-profile: kept $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
cd "$work"

# ---------------------------------------------------------------- token, key, certificates
conf=$("$here/softhsm-config/new-token.sh" "$work/hsm" profile 1234)
export SOFTHSM2_CONF=$conf
printf 1234 > pin
uri="pkcs11:token=profile;object=p256?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:$work/pin"
keyid=$("$bin" key generate --json --type ecdsa-p256 "$uri" |
  python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("keyid") or d["key_id"])')

cert() { # name cn ext
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" \
    -subj "/CN=$2" -out "$1.csr" 2>/dev/null
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile <(printf '%s\n' "$3") -out "$1.pem" 2>/dev/null
}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
  -days 2 -subj /CN=profile-ca -addext basicConstraints=critical,CA:TRUE \
  -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
cert server localhost "basicConstraints=CA:FALSE
subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
cert client bench-client "basicConstraints=CA:FALSE
extendedKeyUsage=clientAuth"

cat > signer.toml <<EOF
# written by benches/daemon-profile.sh
listen = "127.0.0.1:0"
state = "state.json"
audit = "audit.jsonl"

[tls]
cert = "server.pem"
key = "server.key"
client_ca = "ca.pem"

[[keys]]
uri = "$uri"

[[clients]]
identity = "bench-client"
keys = ["$keyid"]
repositories = ["*"]
roles = ["timestamp"]
max_expiry = "7d"
rate = "1000000/s"
EOF

# ---------------------------------------------------------------- the clients
# client.py ADDR FIRST_VERSION WARM COUNT: opens one connection per client (thread),
# sends WARM requests on each, prints "warm" and waits for a line on stdin, sends COUNT
# more, prints "done" and waits again: the handshakes and the warm-up stay out of
# whatever is measured between the two lines. Client i signs for repository profile-i.
cat > client.py <<'EOF'
import http.client, json, os, ssl, sys, threading, datetime
addr, first, warm, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
clients = int(os.environ.get("PROFILE_CLIENTS", "1"))
keyid = os.environ["KEYID"]
host, port = addr.rsplit(":", 1)
ctx = ssl.create_default_context(cafile="ca.pem")
ctx.load_cert_chain("client.pem", "client.key")
expires = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
def body(repo, v):
    return json.dumps({"repository": repo, "key_id": keyid, "role": "timestamp", "metadata": {
        "signed": {"_type": "timestamp", "spec_version": "1.0.31", "version": v, "expires": expires,
                   "meta": {"snapshot.json": {"version": v, "length": 1514, "hashes": {
                       "sha256": "8f88e2ba48b412c3843e9bb26e1b6f8fc9e98aceb0fbaa97ba37b4c98717d7ab"}}}},
        "signatures": []}}, separators=(",", ":"))
conns = []
for i in range(clients):
    c = http.client.HTTPSConnection(host, int(port), context=ctx)
    c.connect()
    conns.append(c)
batch = int(os.environ.get("PROFILE_BATCH", "0"))
def batch_body(repo, v):
    # One request of `batch` documents with consecutive versions (a sign-batch body).
    docs = [json.loads(body(repo, v * batch + k)) for k in range(batch)]
    return json.dumps({"repository": repo, "key_id": keyid, "documents": [
        {"role": "timestamp", "metadata": d["metadata"]} for d in docs]}, separators=(",", ":"))
def send(i, v):
    c = conns[i]
    if batch:
        c.request("POST", "/v1/sign-batch", body=batch_body(f"profile-{i}", v),
                  headers={"Content-Type": "application/json"})
    else:
        c.request("POST", "/v1/sign", body=body(f"profile-{i}", v),
                  headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    if r.status != 200:
        raise RuntimeError(f"the daemon answered {r.status}: {data!r}")
def phase(start, n):
    failed = []
    def run(i):
        try:
            for k in range(n):
                send(i, start + k)
        except BaseException as e:
            failed.append(e)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads: t.start()
    for t in threads: t.join()
    if failed:
        sys.exit(f"daemon-profile: a client failed: {failed[0]}")
phase(first, warm)
print("warm", flush=True)
sys.stdin.readline()
phase(first + warm, count)
print("done", flush=True)
sys.stdin.readline()
EOF
export KEYID=$keyid PROFILE_CLIENTS=$clients PROFILE_BATCH=${PROFILE_BATCH:-0}
# "per request" figures below are per signature: a batch request counts its documents.
per_request=$(( ${PROFILE_BATCH:-0} > 0 ? PROFILE_BATCH : 1 ))

start_daemon() { # command prefix...
  rm -f ready
  "$@" "$bin" serve --config signer.toml --ready-file ready >/dev/null 2>daemon.log &
  daemon_pid=$!
  for _ in $(seq 600); do
    [ -s ready ] && return 0
    kill -0 "$daemon_pid" 2>/dev/null || { cat daemon.log >&2; exit 1; }
    sleep 0.1
  done
  echo "daemon-profile: the daemon did not become ready" >&2
  exit 1
}
stop_daemon() {
  kill -TERM "$daemon_pid"
  wait "$daemon_pid" 2>/dev/null || true
  daemon_pid=
}
version=1
# measure CMD...: warm-up, then CMD, the measured requests, CMD again. Each client keeps
# its one connection throughout.
measure() {
  coproc CLIENT { python3 client.py "$(cat ready)" "$version" "$warm" "$n"; }
  local line
  read -r line <&"${CLIENT[0]}" && [ "$line" = warm ] || { echo "daemon-profile: the client failed" >&2; exit 1; }
  "$@" start
  echo go >&"${CLIENT[1]}"
  read -r line <&"${CLIENT[0]}" && [ "$line" = done ] || { echo "daemon-profile: the client failed" >&2; exit 1; }
  "$@" end
  echo go >&"${CLIENT[1]}"
  wait "$CLIENT_PID" 2>/dev/null || true
  version=$((version + warm + n))
}

echo "daemon-profile: $bin, $clients client(s), $warm warm-up + $n measured requests each (of $per_request document(s)); $(nproc) CPUs, loadavg $(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- 1. natively: syscalls, switches
perf_ctl() {
  if [ "$1" = start ]; then
    perf stat -x, -e raw_syscalls:sys_enter,context-switches,task-clock -p "$daemon_pid" -o perf.txt &
    perf_pid=$!
    sleep 0.5
  else
    kill -INT "$perf_pid"
    wait "$perf_pid" 2>/dev/null || true
  fi
}
start_daemon
measure perf_ctl
stop_daemon
total=$((n * clients * per_request))
python3 - "$total" <<'EOF'
import sys
total = int(sys.argv[1])
vals = {}
for line in open("perf.txt"):
    f = line.strip().split(",")
    if len(f) > 2 and f[0] and f[0][0].isdigit():
        vals[f[2]] = float(f[0])
print(f"native: per request {vals.get('raw_syscalls:sys_enter', 0) / total:.1f} system calls, "
      f"{vals.get('context-switches', 0) / total:.1f} context switches, "
      f"{vals.get('task-clock', 0) * 1000 / total:.0f} us of CPU (task-clock: moves with the load)")
EOF
if [ "${PROFILE_STRACE:-0}" = 1 ]; then
  # Which system calls (strace slows the daemon, so only the counts mean anything).
  strace_ctl() {
    if [ "$1" = start ]; then
      strace -f -c -o strace.txt -p "$daemon_pid" 2>/dev/null &
      strace_pid=$!
      sleep 0.5
    else
      kill -INT "$strace_pid"
      wait "$strace_pid" 2>/dev/null || true
    fi
  }
  start_daemon
  measure strace_ctl
  stop_daemon
  echo "strace: system calls per request (all threads):"
  awk -v t="$total" '$1 ~ /^[0-9.]+$/ && NF >= 5 { printf "  %6.2f  %s\n", $4 / t, $NF }' strace.txt |
    sort -rn | head -20
fi

if [ "${PROFILE_PERF_RECORD:-0}" = 1 ]; then
  # Where the CPU time goes natively (cycles sampled with call graphs, kernel included):
  # what callgrind's instruction counts cannot show — system calls, page faults, the
  # kernel's side of fsync and of the socket, wake-ups.
  record_ctl() {
    if [ "$1" = start ]; then
      perf record -F 4999 ${PROFILE_PERF_CALLGRAPH:--g} -o perf.data -p "$daemon_pid" 2>/dev/null &
      record_pid=$!
      sleep 0.5
    else
      kill -INT "$record_pid"
      wait "$record_pid" 2>/dev/null || true
    fi
  }
  start_daemon
  measure record_ctl
  stop_daemon
  echo "perf record: share of the daemon's samples by where they ran (self), top $top:"
  perf report -i perf.data --no-children --sort dso,sym --stdio 2>/dev/null |
    grep -E '^ +[0-9.]+%' | head -"$top"
  echo "perf record: user/kernel split:"
  perf report -i perf.data --no-children --sort cpumode --stdio 2>/dev/null | grep -E '^ +[0-9.]+%'
fi

# ---------------------------------------------------------------- 2. callgrind: instructions
[ "${PROFILE_CALLGRIND:-1}" = 1 ] || exit 0
version=$((version + 1))
start_daemon valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out.%p" \
  --dump-instr=no --separate-threads=no
# vgdb (behind callgrind_control) reaches the daemon even while it sleeps in epoll_wait:
# each dump also zeroes the counters, so the second one holds the measured requests.
dump_ctl() {
  callgrind_control --dump="$([ "$1" = start ] && echo warmup || echo measured)" "$daemon_pid" >/dev/null
}
measure dump_ctl
stop_daemon
measured=$(grep -l '^desc: Trigger: .*measured' callgrind.out.* | head -1)
[ -n "$measured" ] || { echo "daemon-profile: no callgrind dump of the measured requests" >&2; ls >&2; exit 1; }
python3 - "$measured" "$total" "$top" <<'EOF'
# Reads the callgrind file itself (callgrind_annotate 3.19 shows inclusive figures as
# self ones for these dumps): self cost per function, and inclusive cost as self cost
# plus the cost of the calls it makes.
import collections, re, sys
path, total_requests, top = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
names = {"fn": {}, "ob": {}, "fl": {}}
own, calls, obj = collections.Counter(), collections.Counter(), {}
fn = ob = cfn = None
after_calls = False
def name(kind, v):
    m = re.match(r"\((\d+)\)(?: (.*))?$", v)
    if not m:
        return v
    if m.group(2) is not None:
        names[kind][m.group(1)] = m.group(2)
    return names[kind].get(m.group(1), v)
for line in open(path):
    line = line.rstrip("\n")
    if after_calls:
        after_calls = False
        f = line.split()
        if len(f) >= 2 and fn is not None and cfn != fn:
            calls[fn] += int(f[1])
        continue
    if not line or line[0] == "#":
        continue
    if line[0].isdigit() or line[0] in "+-*":
        f = line.split()
        if len(f) >= 2 and fn is not None:
            own[fn] += int(f[1])
        continue
    key, _, val = line.partition("=")
    if key == "ob":
        ob = name("ob", val)
    elif key == "fn":
        fn = name("fn", val)
        obj.setdefault(fn, ob)
    elif key in ("fl", "fi", "fe", "cfi", "cfl"):
        name("fl", val)
    elif key == "cob":
        name("ob", val)
    elif key == "cfn":
        cfn = name("fn", val)
    elif key == "calls":
        after_calls = True
incl = own + calls
program = sum(own.values())
per = lambda x: x / total_requests
def incl_of(pattern):
    return max((c for f, c in incl.items() if re.search(pattern, f)), default=0)
hsm = incl_of(r"as tufkey::keys::signer::Signer>::sign$")
check = incl_of(r"^tufkey::keys::(checked|SelfCheck::check)$")
print(f"callgrind: {per(program):,.0f} instructions per request in all: {per(hsm):,.0f} in the "
      f"HSM call (Signer::sign), {per(check):,.0f} in the self-check (keys::SelfCheck::check), "
      f"{per(program - hsm - check):,.0f} outside both (P2's budget)")
print("\nthe request path outside the HSM call and the self-check, inclusive, per request:")
for label, pat in [
    ("the connection task on the runtime thread (hyper, TLS, handler)", r"^tufkey::server::serve::\{\{closure\}\}::\{\{closure\}\}$"),
    ("  TLS: reading records (tokio-rustls)", r"^tokio_rustls::common::Stream<IO,C>::read_io$"),
    ("  TLS: writing records (tokio-rustls)", r"^tokio_rustls::common::Stream<IO,C>::write_io$"),
    ("  HTTP: parsing the request head (hyper)", r"^hyper::proto::h1::io::Buffered<T,B>::parse$"),
    ("  the handler (App::route)", r"^tufkey::server::api::App::route::\{\{closure\}\}$"),
    ("    the body as a sign request (sign_body::parse)", r"^tufkey::server::sign_body::parse$"),
    ("    the document and its payload (document::prepare*)", r"^tufkey::server::document::prepare(_text)?$"),
    ("audit: the commit (append_many_blocking)", r"^tufkey::audit::file::AuditLog::append_many_blocking$"),
    ("  audit: encoding the line (chain::encode)", r"^tufkey::audit::chain::encode$"),
    ("tokio: the blocking pool hand-off (spawn_blocking)", r"^tokio::runtime::blocking::pool::Spawner::spawn_blocking"),
]:
    print(f"  {per(incl_of(pat)):>10,.0f}  {label}")
alloc = sum(c for f, c in own.items() if re.fullmatch(r"malloc|free|realloc|calloc|_int_malloc|_int_free|_int_realloc|malloc_consolidate|unlink_chunk.*|operator new.*|operator delete.*|cfree.*", f))
print(f"  {per(alloc):>10,.0f}  malloc/free, own instructions, everywhere (HSM included)")
print(f"\ntop {top} functions by own instructions per request (HSM and self-check included):")
for f, c in own.most_common(top):
    where = (obj.get(f) or "").rsplit("/", 1)[-1]
    print(f"  {per(c):>10,.0f}  {f[:110]}  [{where}]")
EOF
