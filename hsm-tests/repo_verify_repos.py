"""Repositories written by python-tuf itself, and python-tuf's ngclient run on them.

Used by hsm-tests/repo_verify.rs; run with the test venv's Python
($TUFKEY_TEST_PYTHON, made by hsm-tests/run.sh).

  build OUT       writes OUT/<case>/{metadata,targets} for the good repository and each
                  broken copy; prints {"cases": [...], "targets": [...]} as JSON.
  client DIR ROOT AT TARGET...
                  serves DIR over HTTP on loopback, runs ngclient.Updater from the trusted
                  ROOT with reference time AT ("now" or ISO 8601), refreshes and downloads
                  each TARGET; prints {"ok": bool, "error": "Type: message" | null}.

Keys are generated here with securesystemslib's CryptoSigner; nothing in the good
repository comes from tufkey.
"""

import copy
import datetime
import functools
import hashlib
import http.server
import json
import os
import shutil
import sys
import tempfile
import threading

from securesystemslib.signer import CryptoSigner, Signature
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    SuccinctRoles,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer
from tuf.ngclient import Updater

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
IN_A_YEAR = NOW + datetime.timedelta(days=365)
TARGETS = {
    "hello.txt": b"hello from python-tuf\n",
    "team/tool.bin": bytes(range(256)) * 8,
}


def signers():
    return {
        "root1": CryptoSigner.generate_ed25519(),
        "root2": CryptoSigner.generate_ecdsa(),
        "targets": CryptoSigner.generate_ed25519(),
        "snapshot": CryptoSigner.generate_ecdsa(),
        "ts1": CryptoSigner.generate_ed25519(),
        "ts2": CryptoSigner.generate_ed25519(),
        "team": CryptoSigner.generate_ecdsa(),
    }


def to_bytes(md):
    return md.to_bytes(JSONSerializer(compact=False))


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def build_one(out, keys, tweak=lambda stage, signed, keys: None, post=lambda out: None,
              extra_sign=lambda stage, md, keys: None, consistent=True, succinct=False):
    """The repository: root v1 -> v2 (second root key, threshold 2, timestamp key
    rotated), targets with hello.txt delegating team/* to `team` (team/tool.bin),
    snapshot and timestamp stating versions, lengths and hashes; consistent snapshots
    unless `consistent` is False (then snapshot.json, targets.json, targets/PATH); with
    `succinct`, targets delegates to four hash bins (TAP 15) instead of `team`.
    `tweak` edits a role's `signed` before it is signed, `extra_sign` adds signatures,
    `post` damages files after they are written."""
    pub = {n: s.public_key for n, s in keys.items()}

    root = Root(expires=IN_A_YEAR, consistent_snapshot=consistent)
    for role, k in [("root", "root1"), ("targets", "targets"), ("snapshot", "snapshot"),
                    ("timestamp", "ts1")]:
        root.add_key(pub[k], role)
    root1 = Metadata(root)
    root1.sign(keys["root1"])

    root2_signed = copy.deepcopy(root)
    root2_signed.version = 2
    root2_signed.add_key(pub["root2"], "root")
    root2_signed.roles["root"].threshold = 2
    root2_signed.revoke_key(pub["ts1"].keyid, "timestamp")
    root2_signed.add_key(pub["ts2"], "timestamp")
    tweak("root2", root2_signed, keys)
    root2 = Metadata(root2_signed)
    root2.sign(keys["root1"], append=True)
    root2.sign(keys["root2"], append=True)
    extra_sign("root2", root2, keys)

    files = {p: TargetFile.from_data(p, data, ["sha256", "sha512"]) for p, data in TARGETS.items()}
    targets_signed = Targets(expires=IN_A_YEAR)
    targets_signed.targets["hello.txt"] = files["hello.txt"]
    team_key = {pub["team"].keyid: pub["team"]}
    if succinct:
        # TAP 15: four hash bins bins-0..bins-3, each a role of its own signed by `team`.
        bins = SuccinctRoles([pub["team"].keyid], 1, 2, "bins")
        targets_signed.delegations = Delegations(keys=team_key, succinct_roles=bins)
        delegated = {name: Targets(expires=IN_A_YEAR) for name in bins.get_roles()}
        delegated[bins.get_role_for_target("team/tool.bin")].targets["team/tool.bin"] = files["team/tool.bin"]
        tweak("bins", delegated, keys)
    else:
        targets_signed.delegations = Delegations(
            keys=team_key,
            roles={"team": DelegatedRole("team", [pub["team"].keyid], 1, True, paths=["team/*"])},
        )
        delegated = {"team": Targets(expires=IN_A_YEAR)}
        delegated["team"].targets["team/tool.bin"] = files["team/tool.bin"]
        tweak("team", delegated["team"], keys)
    tweak("delegated", delegated, keys)
    delegated_bytes = {}
    for name, signed in delegated.items():
        md = Metadata(signed)
        md.sign(keys["team"])
        delegated_bytes[name] = to_bytes(md)
    tweak("targets", targets_signed, keys)
    targets = Metadata(targets_signed)
    targets.sign(keys["targets"])
    targets_bytes = to_bytes(targets)

    snapshot_signed = Snapshot(expires=IN_A_YEAR)
    snapshot_signed.meta["targets.json"] = MetaFile(1)
    for name, data in delegated_bytes.items():
        snapshot_signed.meta[f"{name}.json"] = MetaFile(1, len(data))
    tweak("snapshot", snapshot_signed, keys)
    snapshot = Metadata(snapshot_signed)
    snapshot.sign(keys["snapshot"])
    snapshot_bytes = to_bytes(snapshot)

    timestamp_signed = Timestamp(expires=NOW + datetime.timedelta(days=1))
    timestamp_signed.snapshot_meta = MetaFile.from_data(
        snapshot_signed.version, snapshot_bytes, ["sha256"])
    tweak("timestamp", timestamp_signed, keys)
    timestamp = Metadata(timestamp_signed)
    timestamp.sign(keys["ts2"])

    meta = os.path.join(out, "metadata")
    write(os.path.join(meta, "1.root.json"), to_bytes(root1))
    write(os.path.join(meta, f"{root2_signed.version}.root.json"), to_bytes(root2))
    prefix = lambda version: f"{version}." if consistent else ""
    write(os.path.join(meta, f"{prefix(targets_signed.version)}targets.json"), targets_bytes)
    for name, data in delegated_bytes.items():
        write(os.path.join(meta, f"{prefix(delegated[name].version)}{name}.json"), data)
    write(os.path.join(meta, f"{prefix(snapshot_signed.version)}snapshot.json"), snapshot_bytes)
    write(os.path.join(meta, "timestamp.json"), to_bytes(timestamp))
    for path, data in TARGETS.items():
        dirname, _, name = path.rpartition("/")
        names = [f"{h}.{name}" for h in files[path].hashes.values()] if consistent else [name]
        for n in names:
            write(os.path.join(out, "targets", dirname, n), data)
    post(out)


# ---- the broken copies ------------------------------------------------------------


def flip_signature(out):
    path = os.path.join(out, "metadata", "1.targets.json")
    doc = json.load(open(path))
    sig = doc["signatures"][0]["sig"]
    doc["signatures"][0]["sig"] = sig[:-2] + ("00" if sig[-2:] != "00" else "11")
    write(path, json.dumps(doc, indent=1).encode())


def same_key_two_ids(stage, signed, keys):
    """Root v2's root role lists root1's key twice (a second, made-up key id), threshold
    2, and drops root2: one key meets the threshold of 2 in python-tuf's count."""
    if stage != "root2":
        return
    k = keys["root1"].public_key
    alias = copy.deepcopy(k)
    alias.keyid = "aa" * 32
    signed.revoke_key(keys["root2"].public_key.keyid, "root")
    signed.add_key(alias, "root")


def sign_as_alias(stage, md, keys):
    if stage != "root2":
        return
    del md.signatures[keys["root2"].public_key.keyid]
    sig = keys["root1"].sign(md.signed_bytes)
    md.signatures["aa" * 32] = Signature("aa" * 32, sig.signature)


def snapshot_states_targets_v2(stage, signed, keys):
    if stage == "snapshot":
        signed.meta["targets.json"] = MetaFile(2)


def copy_targets_as_v2(out):
    meta = os.path.join(out, "metadata")
    shutil.copy(os.path.join(meta, "1.targets.json"), os.path.join(meta, "2.targets.json"))


def wrong_snapshot_hash(stage, signed, keys):
    if stage == "timestamp":
        signed.snapshot_meta.hashes = {"sha256": "00" * 32}


def root_v3_without_v2(stage, signed, keys):
    if stage == "root2":
        signed.version = 3


def tamper_target(out):
    for dirpath, _, names in os.walk(os.path.join(out, "targets")):
        for n in names:
            if n.endswith(".hello.txt"):
                with open(os.path.join(dirpath, n), "ab") as f:
                    f.write(b"malware\n")


def expired_timestamp(stage, signed, keys):
    if stage == "timestamp":
        signed.expires = NOW - datetime.timedelta(hours=1)


def team_lists_outside_its_paths(stage, signed, keys):
    """`team` may hold team/* only, and lists elsewhere/tool.bin: no client finds it."""
    if stage == "team":
        signed.targets["elsewhere/tool.bin"] = TargetFile.from_data(
            "elsewhere/tool.bin", TARGETS["team/tool.bin"])


def tool_in_the_wrong_bin(stage, delegated, keys):
    """team/tool.bin hashes into bins-1; list it in bins-2 instead."""
    if stage == "bins":
        for signed in delegated.values():
            signed.targets.clear()
        delegated["bins-2"].targets["team/tool.bin"] = TargetFile.from_data(
            "team/tool.bin", TARGETS["team/tool.bin"], ["sha256", "sha512"])


def team_by_hash_prefix(stage, delegated, keys):
    """targets delegates `team` by path_hash_prefixes: the first two hex digits of the
    SHA-256 of team/tool.bin."""
    if stage == "targets":
        prefix = hashlib.sha256(b"team/tool.bin").hexdigest()[:2]
        role = delegated.delegations.roles["team"]
        role.paths = None
        role.path_hash_prefixes = [prefix]


def deep_role_beyond_team_paths(stage, delegated, keys):
    """team delegates `deep` every path ("*"), and deep lists other.bin: but targets
    gave team only team/*, so no client looks for other.bin in deep."""
    if stage != "delegated":
        return
    team_key = keys["team"].public_key
    delegated["team"].delegations = Delegations(
        keys={team_key.keyid: team_key},
        roles={"deep": DelegatedRole("deep", [team_key.keyid], 1, False, paths=["*"])},
    )
    delegated["deep"] = Targets(expires=IN_A_YEAR)
    delegated["deep"].targets["other.bin"] = TargetFile.from_data("other.bin", b"other")


CASES = {
    "good": {},
    "good_not_consistent": {"consistent": False},
    "good_succinct": {"succinct": True},
    "good_hash_prefixes": {"tweak": team_by_hash_prefix},
    "succinct_wrong_bin": {"succinct": True, "tweak": tool_in_the_wrong_bin},
    "deep_role_beyond_team_paths": {"tweak": deep_role_beyond_team_paths},
    "bad_signature": {"post": flip_signature},
    "same_key_two_ids": {"tweak": same_key_two_ids, "extra_sign": sign_as_alias},
    "snapshot_wrong_targets_version": {"tweak": snapshot_states_targets_v2, "post": copy_targets_as_v2},
    "timestamp_wrong_snapshot_hashes": {"tweak": wrong_snapshot_hash},
    "root_version_gap": {"tweak": root_v3_without_v2},
    "tampered_target": {"post": tamper_target},
    "expired_timestamp": {"tweak": expired_timestamp},
    "target_outside_delegated_paths": {"tweak": team_lists_outside_its_paths},
}


def build(out):
    keys = signers()
    for name, hooks in CASES.items():
        build_one(os.path.join(out, name), keys, **hooks)
    print(json.dumps({"cases": list(CASES), "targets": list(TARGETS)}))


# ---- the client ---------------------------------------------------------------------


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def client(repo, trusted_root, at, target_paths):
    handler = functools.partial(QuietHandler, directory=repo)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    work = tempfile.mkdtemp(prefix="tufkey-ngclient-")
    result = {"ok": True, "error": None, "downloaded": []}
    try:
        with open(trusted_root, "rb") as f:
            trusted = f.read()
        updater = Updater(metadata_dir=work, metadata_base_url=f"{base}/metadata/",
                          target_dir=os.path.join(work, "dl"), target_base_url=f"{base}/targets/",
                          bootstrap=trusted)
        os.makedirs(os.path.join(work, "dl"))
        if at != "now":
            updater._trusted_set.reference_time = datetime.datetime.fromisoformat(
                at.replace("Z", "+00:00"))
        updater.refresh()
        for path in target_paths:
            info = updater.get_targetinfo(path)
            if info is None:
                raise LookupError(f"target {path} is not found by any role allowed to hold it")
            updater.download_target(info)
            result["downloaded"].append(path)
    except Exception as e:  # the verdict is the point: report any refusal
        result = {"ok": False, "error": f"{type(e).__name__}: {e}", "downloaded": result["downloaded"]}
    finally:
        server.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    if sys.argv[1] == "build":
        build(sys.argv[2])
    elif sys.argv[1] == "client":
        client(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])
    else:
        sys.exit(f"unknown command {sys.argv[1]}; use build or client")
