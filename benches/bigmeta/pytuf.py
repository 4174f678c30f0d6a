"""python-tuf's side of the big-metadata bench (benches/bigmeta/run.sh).

  pytuf.py make DIR TARGETS ROOTS TUFKEY_KEY_JSON [ecdsa|ed25519]
      DIR/py-key.pem (P-256), DIR/targets.json (TARGETS targets, unsigned),
      DIR/root.json (targets role: the python key and tufkey's key, threshold 1),
      DIR/chain/1..ROOTS.root.json: root rotations with changing keys and thresholds,
      keys of the given type (default ecdsa: P-256).
  pytuf.py sign FILE KEY_PEM OUT RUNS      Metadata.from_file, sign, to_file; best of RUNS
  pytuf.py verify FILE ROOT RUNS           Metadata.from_file + root.verify_delegate; best of RUNS
  pytuf.py chain DIR ROOTS RUNS            TrustedMetadataSet(1.root) + update_root(2..ROOTS); best of RUNS

Timings are in-process (interpreter start and imports excluded) and printed as JSON.
"""

import json
import os
import sys
import time
from datetime import datetime, timedelta, timezone

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from securesystemslib.signer import CryptoSigner, Key
from tuf.api.metadata import Metadata, Root, Role, TargetFile, Targets
from tuf.api.serialization.json import JSONSerializer
from tuf.ngclient._internal.trusted_metadata_set import TrustedMetadataSet
from tuf.ngclient.config import EnvelopeType

EXPIRES = datetime(2035, 1, 1, tzinfo=timezone.utc)


def new_signer(kind="ecdsa"):
    if kind == "ed25519":
        return CryptoSigner(ed25519.Ed25519PrivateKey.generate())
    return CryptoSigner(ec.generate_private_key(ec.SECP256R1()))


def pem(signer):
    return signer._private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_signer(path):
    with open(path, "rb") as f:
        return CryptoSigner(serialization.load_pem_private_key(f.read(), None))


def make(d, n_targets, n_roots, tufkey_key_json, chain_key="ecdsa"):
    os.makedirs(os.path.join(d, "chain"), exist_ok=True)
    py = new_signer()
    with open(os.path.join(d, "py-key.pem"), "wb") as f:
        f.write(pem(py))
    with open(tufkey_key_json) as f:
        tk = json.load(f)
    tufkey_key = Key.from_dict(tk["keyid"], dict(tk["key"]))

    targets = Metadata(Targets(version=1, expires=EXPIRES))
    for i in range(n_targets):
        path = f"pkg/{i % 997:03d}/{i:06d}.tgz"
        digest = f"{i:064x}"[::-1]
        targets.signed.targets[path] = TargetFile(1000 + i * 7, {"sha256": digest}, path)
    targets.to_file(os.path.join(d, "targets.json"), JSONSerializer(compact=False))

    root = Metadata(Root(expires=EXPIRES))
    root.signed.add_key(py.public_key, "root")
    for role in ("targets", "snapshot", "timestamp"):
        root.signed.add_key(py.public_key, role)
    root.signed.add_key(tufkey_key, "targets")
    root.sign(py)
    root.to_file(os.path.join(d, "root.json"), JSONSerializer(compact=False))

    # The chain: five root keys at first; each version replaces one key, and the
    # threshold moves between 2 and 4. Every version is signed by all of the previous
    # root's keys and all of its own (as a ceremony would collect them).
    keys = [new_signer(chain_key) for _ in range(5)]
    threshold = 3
    prev = []
    for v in range(1, n_roots + 1):
        if v > 1:
            keys = keys[1:] + [new_signer(chain_key)]
            threshold = 2 + (v % 3)
        r = Metadata(Root(version=v, expires=EXPIRES))
        for s in keys:
            r.signed.add_key(s.public_key, "root")
        r.signed.roles["root"].threshold = threshold
        for role in ("targets", "snapshot", "timestamp"):
            r.signed.add_key(keys[0].public_key, role)
        signers = {s.public_key.keyid: s for s in prev + keys}
        for s in signers.values():
            r.sign(s, append=True)
        r.to_file(os.path.join(d, "chain", f"{v}.root.json"), JSONSerializer(compact=False))
        prev = keys


def best(runs, fn):
    """(best wall seconds, best CPU seconds) over RUNS calls."""
    walls, cpus = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus)


def sign(path, key_pem, out, runs):
    signer = load_signer(key_pem)

    def once():
        md = Metadata.from_file(path)
        md.sign(signer)
        md.to_file(out, JSONSerializer(compact=False))

    return best(runs, once)


def verify(path, root_path, runs):
    root = Metadata.from_file(root_path)

    def once():
        md = Metadata.from_file(path)
        root.verify_delegate("targets", md)

    return best(runs, once)


def chain(d, n_roots, runs):
    data = []
    for v in range(1, n_roots + 1):
        with open(os.path.join(d, "chain", f"{v}.root.json"), "rb") as f:
            data.append(f.read())

    def once():
        trusted = TrustedMetadataSet(data[0], EnvelopeType.METADATA)
        for raw in data[1:]:
            trusted.update_root(raw)
        assert trusted.root.version == n_roots

    return best(runs, once)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "make":
        make(args[0], int(args[1]), int(args[2]), args[3], *args[4:5])
        return
    if cmd == "sign":
        s = sign(args[0], args[1], args[2], int(args[3]))
    elif cmd == "verify":
        s = verify(args[0], args[1], int(args[2]))
    elif cmd == "chain":
        s = chain(args[0], int(args[1]), int(args[2]))
    else:
        sys.exit(f"unknown command {cmd}")
    print(json.dumps({"best_s": s[0], "cpu_s": s[1]}))


if __name__ == "__main__":
    main()
