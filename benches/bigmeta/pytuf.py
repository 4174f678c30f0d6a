"""python-tuf's side of the big-metadata bench (benches/bigmeta/run.sh).

  pytuf.py make DIR TARGETS ROOTS TUFKEY_KEY_JSON [ecdsa|ed25519]
      DIR/py-key.pem (P-256), DIR/targets.json (TARGETS targets, unsigned),
      DIR/root.json (targets role: the python key and tufkey's key, threshold 1),
      DIR/chain/1..ROOTS.root.json: root rotations with changing keys and thresholds,
      keys of the given type (default ecdsa: P-256).
      Also, for the whole-repository comparison (tufkey repo, tuftool, ngclient):
      DIR/py-key.der (the same key as PKCS#8 DER, the form tuftool reads), DIR/manifest.txt
      (the same TARGETS targets as `PATH LENGTH sha256:HEX` lines for `tufkey repo add
      --manifest`), DIR/repo-root.json (consistent snapshots; every role: that one key).
  pytuf.py sign FILE KEY_PEM OUT RUNS      Metadata.from_file, sign, to_file; best of RUNS
  pytuf.py verify FILE ROOT RUNS           Metadata.from_file + root.verify_delegate; best of RUNS
  pytuf.py chain DIR ROOTS RUNS            TrustedMetadataSet(1.root) + update_root(2..ROOTS); best of RUNS
  pytuf.py tough-copy REPO DST KEY_PEM      REPO's root and targets with spec_version "1.0.0" (what
                                           tough's editor takes), snapshot and timestamp, in DST
  pytuf.py download REPO TARGET RUNS       ngclient.Updater from REPO/metadata/1.root.json, an empty
                                           cache and file reads (no HTTP): refresh, get_targetinfo,
                                           download_target; best of RUNS

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
from tuf.api.metadata import (
    MetaFile,
    Metadata,
    Role,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.exceptions import DownloadHTTPError
from tuf.api.serialization.json import JSONSerializer
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig
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
    with open(os.path.join(d, "manifest.txt"), "w") as f:
        for path, t in targets.signed.targets.items():
            f.write(f"{path} {t.length} sha256:{t.hashes['sha256']}\n")
    with open(os.path.join(d, "py-key.der"), "wb") as f:
        f.write(
            py._private_key.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    repo_root = Metadata(Root(expires=EXPIRES, consistent_snapshot=True))
    for role in ("root", "targets", "snapshot", "timestamp"):
        repo_root.signed.add_key(py.public_key, role)
    repo_root.sign(py)
    repo_root.to_file(os.path.join(d, "repo-root.json"), JSONSerializer(compact=False))

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


class FileFetcher(FetcherInterface):
    """file:// URLs read from disk, so the client's time is TUF's, not a web server's.
    A missing file is a 404, which ends ngclient's walk through N+1.root.json."""

    def _fetch(self, url):
        path = url.removeprefix("file://")
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            raise DownloadHTTPError(f"{path} not found", 404) from None

        def chunks():
            with f:
                while chunk := f.read(1 << 20):
                    yield chunk

        return chunks()


def download(repo, target, runs):
    """One client update per run, from an empty cache: ngclient checks the root chain,
    timestamp, snapshot and targets (lengths from snapshot: no 5 MB targets cap), then
    downloads TARGET and checks its length and hashes."""
    import tempfile

    repo = os.path.abspath(repo)
    with open(os.path.join(repo, "metadata", "1.root.json"), "rb") as f:
        bootstrap = f.read()
    walls, cpus = [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as cache:
            os.makedirs(os.path.join(cache, "metadata"))
            os.makedirs(os.path.join(cache, "targets"))
            t0, c0 = time.perf_counter(), time.process_time()
            updater = Updater(
                metadata_dir=os.path.join(cache, "metadata"),
                metadata_base_url=f"file://{repo}/metadata/",
                target_dir=os.path.join(cache, "targets"),
                target_base_url=f"file://{repo}/targets/",
                fetcher=FileFetcher(),
                bootstrap=bootstrap,
                config=UpdaterConfig(),
            )
            updater.refresh()
            info = updater.get_targetinfo(target)
            if info is None:
                sys.exit(f"ngclient: no role lists {target}")
            updater.download_target(info)
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
    return min(walls), min(cpus)


def tough_copy(src, dst, key_pem):
    """tough's editor (`tuftool update`) refuses targets, snapshot and timestamp whose
    spec_version is not exactly "1.0.0"; tufkey and python-tuf write "1.0.31". DST gets
    SRC's root and targets (the same 100,000 entries) with "1.0.0", version 1, snapshot
    and timestamp to match, all signed by the same key, so tuftool can re-sign it."""
    import hashlib
    import shutil

    signer = load_signer(key_pem)
    m, out = os.path.join(src, "metadata"), os.path.join(dst, "metadata")
    os.makedirs(out)
    shutil.copy(os.path.join(m, "1.root.json"), out)
    ts = Metadata.from_file(os.path.join(m, "timestamp.json"))
    sv = ts.signed.snapshot_meta.version
    snap = Metadata.from_file(os.path.join(m, f"{sv}.snapshot.json"))
    tv = snap.signed.meta["targets.json"].version
    targets = Metadata.from_file(os.path.join(m, f"{tv}.targets.json"))
    targets.signed.spec_version, targets.signed.version = "1.0.0", 1
    targets.sign(signer)
    targets.to_file(os.path.join(out, "1.targets.json"), JSONSerializer(compact=False))
    with open(os.path.join(out, "1.targets.json"), "rb") as f:
        data = f.read()
    info = MetaFile(1, len(data), {"sha256": hashlib.sha256(data).hexdigest()})
    snapshot = Metadata(Snapshot(1, "1.0.0", EXPIRES, {"targets.json": info}))
    snapshot.sign(signer)
    snapshot.to_file(os.path.join(out, "1.snapshot.json"), JSONSerializer(compact=False))
    timestamp = Metadata(Timestamp(1, "1.0.0", EXPIRES, MetaFile(1)))
    timestamp.sign(signer)
    timestamp.to_file(os.path.join(out, "timestamp.json"), JSONSerializer(compact=False))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "tough-copy":
        tough_copy(*args)
        return
    if cmd == "make":
        make(args[0], int(args[1]), int(args[2]), args[3], *args[4:5])
        return
    if cmd == "sign":
        s = sign(args[0], args[1], args[2], int(args[3]))
    elif cmd == "verify":
        s = verify(args[0], args[1], int(args[2]))
    elif cmd == "download":
        s = download(args[0], args[1], int(args[2]))
    elif cmd == "chain":
        s = chain(args[0], int(args[1]), int(args[2]))
    else:
        sys.exit(f"unknown command {cmd}")
    print(json.dumps({"best_s": s[0], "cpu_s": s[1]}))


if __name__ == "__main__":
    main()
