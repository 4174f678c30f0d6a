"""python-tuf's ngclient.Updater against a repository served over HTTP, for tufkey's tests.

usage: ngclient.py METADATA_URL TARGETS_URL TRUSTED_ROOT CACHE_DIR [TARGET_PATH]

Each run is one update cycle of a real client: the Updater starts from TRUSTED_ROOT (the
root it ships with) and CACHE_DIR (metadata it trusted in earlier runs, so rollback and
freeze checks apply across runs), refreshes, and with TARGET_PATH downloads that target
into CACHE_DIR/targets, its length and hashes checked by the Updater.

Prints one JSON line and exits 0 for an outcome, non-zero only if the script itself failed:
  {"outcome": "ok", "trusted_versions": {...}, "bytes_len": N, "sha256": "..."}
  {"outcome": "refused", "error_type": "<python-tuf exception class>", "message": "..."}
A target that no role lists is refused as "TargetNotFound" (the Updater returns None).
"""

import hashlib
import json
import os
import sys

os.environ["no_proxy"] = os.environ["NO_PROXY"] = "127.0.0.1,localhost"

from tuf.api.exceptions import DownloadError, RepositoryError  # noqa: E402
from tuf.ngclient import Updater  # noqa: E402

metadata_url, targets_url, trusted_root, cache = sys.argv[1:5]
target_path = sys.argv[5] if len(sys.argv) > 5 else None


def trusted_versions(updater):
    trusted = updater._trusted_set  # python-tuf keeps no public view of these versions
    return {
        role: getattr(trusted, role).version
        for role in ("root", "timestamp", "snapshot", "targets")
    }


def run():
    with open(trusted_root, "rb") as f:
        bootstrap = f.read()
    metadata_dir = os.path.join(cache, "metadata")
    target_dir = os.path.join(cache, "targets")
    os.makedirs(metadata_dir, exist_ok=True)
    os.makedirs(target_dir, exist_ok=True)
    updater = Updater(
        metadata_dir=metadata_dir,
        metadata_base_url=metadata_url,
        target_dir=target_dir,
        target_base_url=targets_url,
        bootstrap=bootstrap,
    )
    updater.refresh()
    out = {"outcome": "ok", "trusted_versions": trusted_versions(updater)}
    if target_path is not None:
        info = updater.get_targetinfo(target_path)
        if info is None:
            return {
                "outcome": "refused",
                "error_type": "TargetNotFound",
                "message": f"no targets role (top-level or delegated) lists {target_path}",
            }
        path = updater.download_target(info)
        with open(path, "rb") as f:
            data = f.read()
        out["bytes_len"] = len(data)
        out["sha256"] = hashlib.sha256(data).hexdigest()
    return out


try:
    result = run()
except (RepositoryError, DownloadError) as e:
    result = {"outcome": "refused", "error_type": type(e).__name__, "message": str(e)}
print(json.dumps(result))
