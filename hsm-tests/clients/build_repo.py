"""Builds and changes a TUF repository with python-tuf's own Metadata API (no tufkey), so
that tufkey's client helpers are proven on a repository that tufkey did not write.

usage:
  build_repo.py init STATE              a new repository (see below), version 1 of every role
  build_repo.py rotate-root STATE       root N+1: new root key and new timestamp key, signed by
                                        the old and the new root key; timestamp re-signed
  build_repo.py timestamp STATE DAYS    timestamp version +1 that expires in DAYS days
                                        (negative: already expired), same snapshot
  build_repo.py add-target STATE PATH TEXT
                                        a new target in the top-level targets role;
                                        targets, snapshot and timestamp versions +1

STATE/repo is what a server publishes (metadata/ and targets/, the layout python-tuf's
client fetches); STATE/keys holds the private keys (PEM, unencrypted: test data only);
STATE/trusted_root.json is root version 1, what a client ships with.

The repository: consistent snapshots; root (ECDSA P-256), targets (Ed25519), snapshot
(RSA-3072 PSS), timestamp (Ed25519), each threshold 1; top-level targets lists
`hello.txt`; a delegated role `team` (ECDSA P-256) holds `team/*` and `team-*` and lists
`team/app-1.0.tar` (stored as targets/team/<sha256>.app-1.0.tar, as python-tuf names it)
and `team-notes.txt`; snapshot lists targets and team with versions; timestamp lists snapshot
with length and hashes. Prints {"targets": {path: {"length", "sha256"}}} as JSON.
"""

import hashlib
import json
import os
import sys
from datetime import datetime, timedelta, timezone

from cryptography.hazmat.primitives import serialization
from securesystemslib.signer import CryptoSigner, SSlibKey
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)

KEY_TYPES = {
    "root": CryptoSigner.generate_ecdsa,
    "targets": CryptoSigner.generate_ed25519,
    "snapshot": CryptoSigner.generate_rsa,
    "timestamp": CryptoSigner.generate_ed25519,
    "team": CryptoSigner.generate_ecdsa,
}
INITIAL_TARGETS = {
    "hello.txt": (None, b"hello from a python-tuf repository\n"),
    "team/app-1.0.tar": ("team", b"app 1.0, published by the delegated team role\n" * 40),
    "team-notes.txt": ("team", b"release notes of the team, at the top level of targets/\n"),
}


def expiry(days):
    return datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=days)


def key_file(state, role):
    return os.path.join(state, "keys", role + ".pem")


def new_signer(state, role):
    signer = KEY_TYPES[role]()
    pem = signer._private_key.private_bytes(  # CryptoSigner keeps no other export
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    os.makedirs(os.path.join(state, "keys"), exist_ok=True)
    with open(key_file(state, role), "wb") as f:
        f.write(pem)
    return signer


def load_signer(state, role):
    with open(key_file(state, role), "rb") as f:
        private = serialization.load_pem_private_key(f.read(), password=None)
    scheme = {"root": "ecdsa-sha2-nistp256", "team": "ecdsa-sha2-nistp256",
              "snapshot": "rsassa-pss-sha256"}.get(role, "ed25519")
    return CryptoSigner(private, SSlibKey.from_crypto(private.public_key(), scheme=scheme))


def metadata_dir(state):
    return os.path.join(state, "repo", "metadata")


def latest(state, role):
    """The newest version of a versioned role's file (consistent snapshots: N.role.json)."""
    versions = [
        int(name.split(".", 1)[0])
        for name in os.listdir(metadata_dir(state))
        if name.endswith("." + role + ".json") and name.split(".", 1)[0].isdigit()
    ]
    n = max(versions)
    return Metadata.from_file(os.path.join(metadata_dir(state), f"{n}.{role}.json"))


def write_targets_role(state, name, md, signer):
    md.signatures.clear()
    md.sign(signer)
    md.to_file(os.path.join(metadata_dir(state), f"{md.signed.version}.{name}.json"))


def add_target_file(state, path, data):
    """Stores the bytes under their consistent-snapshot name; returns the TargetFile."""
    target = TargetFile.from_data(path, data, ["sha256"])
    folder, base = os.path.split(path)
    out_dir = os.path.join(state, "repo", "targets", folder)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"{target.hashes['sha256']}.{base}"), "wb") as f:
        f.write(data)
    return target


def publish_snapshot_and_timestamp(state, versions, days=1):
    """Snapshot listing `versions` ({"targets.json": N, ...}), then a timestamp for it."""
    snap_signer = load_signer(state, "snapshot")
    try:
        previous = latest(state, "snapshot").signed.version
    except ValueError:
        previous = 0
    snapshot = Metadata(Snapshot(version=previous + 1, expires=expiry(365),
                                 meta={k: MetaFile(version=v) for k, v in versions.items()}))
    snapshot.sign(snap_signer)
    snapshot_bytes = snapshot.to_bytes()
    with open(os.path.join(metadata_dir(state), f"{snapshot.signed.version}.snapshot.json"), "wb") as f:
        f.write(snapshot_bytes)
    write_timestamp(state, snapshot.signed.version, snapshot_bytes, days)


def write_timestamp(state, snapshot_version, snapshot_bytes, days):
    path = os.path.join(metadata_dir(state), "timestamp.json")
    previous = Metadata.from_file(path).signed.version if os.path.exists(path) else 0
    meta = MetaFile(version=snapshot_version, length=len(snapshot_bytes),
                    hashes={"sha256": hashlib.sha256(snapshot_bytes).hexdigest()})
    timestamp = Metadata(Timestamp(version=previous + 1, expires=expiry(days),
                                   snapshot_meta=meta))
    timestamp.sign(load_signer(state, "timestamp"))
    timestamp.to_file(path)


def init(state):
    os.makedirs(metadata_dir(state))
    signers = {role: new_signer(state, role) for role in KEY_TYPES}
    root = Root(expires=expiry(365), consistent_snapshot=True)
    for role in ("root", "targets", "snapshot", "timestamp"):
        root.add_key(signers[role].public_key, role)
    root_md = Metadata(root)
    root_md.sign(signers["root"])
    root_md.to_file(os.path.join(metadata_dir(state), "1.root.json"))
    root_md.to_file(os.path.join(state, "trusted_root.json"))

    top, team = Targets(expires=expiry(365)), Targets(expires=expiry(365))
    listed = {}
    for path, (role, data) in INITIAL_TARGETS.items():
        target = add_target_file(state, path, data)
        (team if role == "team" else top).targets[path] = target
        listed[path] = {"length": target.length, "sha256": target.hashes["sha256"]}
    top.delegations = Delegations(keys={}, roles={})
    top.delegations.roles["team"] = DelegatedRole(
        name="team", keyids=[], threshold=1, terminating=True, paths=["team/*", "team-*"])
    top.add_key(signers["team"].public_key, "team")
    write_targets_role(state, "targets", Metadata(top), signers["targets"])
    write_targets_role(state, "team", Metadata(team), signers["team"])
    publish_snapshot_and_timestamp(state, {"targets.json": 1, "team.json": 1})
    return {"targets": listed}


def rotate_root(state):
    old = latest(state, "root")
    old_root_signer = load_signer(state, "root")
    old_ts_key = old.signed.roles["timestamp"].keyids[0]
    new_root_signer, new_ts_signer = new_signer(state, "root"), new_signer(state, "timestamp")
    root = old.signed
    root.revoke_key(old_root_signer.public_key.keyid, "root")
    root.add_key(new_root_signer.public_key, "root")
    root.revoke_key(old_ts_key, "timestamp")
    root.add_key(new_ts_signer.public_key, "timestamp")
    root.version += 1
    md = Metadata(root)
    md.sign(old_root_signer)
    md.sign(new_root_signer, append=True)
    md.to_file(os.path.join(metadata_dir(state), f"{root.version}.root.json"))
    resign_timestamp(state, 1)
    return {"root_version": root.version}


def resign_timestamp(state, days):
    snapshot = latest(state, "snapshot")
    path = os.path.join(metadata_dir(state), f"{snapshot.signed.version}.snapshot.json")
    with open(path, "rb") as f:
        write_timestamp(state, snapshot.signed.version, f.read(), days)
    return {"timestamp_version": Metadata.from_file(
        os.path.join(metadata_dir(state), "timestamp.json")).signed.version}


def add_target(state, path, text):
    top = latest(state, "targets")
    target = add_target_file(state, path, text.encode())
    top.signed.targets[path] = target
    top.signed.version += 1
    write_targets_role(state, "targets", top, load_signer(state, "targets"))
    team_version = latest(state, "team").signed.version
    publish_snapshot_and_timestamp(
        state, {"targets.json": top.signed.version, "team.json": team_version})
    return {"targets_version": top.signed.version,
            "target": {"length": target.length, "sha256": target.hashes["sha256"]}}


def main(argv):
    command, state = argv[1], argv[2]
    if command == "init":
        out = init(state)
    elif command == "rotate-root":
        out = rotate_root(state)
    elif command == "timestamp":
        out = resign_timestamp(state, int(argv[3]))
    elif command == "add-target":
        out = add_target(state, argv[3], argv[4])
    else:
        sys.exit(__doc__)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv)
