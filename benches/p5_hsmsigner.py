"""P5's comparison: securesystemslib's HSMSigner signs the same canonical payloads that
benches/serve_batches.rs had tufkey serve sign, on the same SoftHSM token and key.

    python p5_hsmsigner.py PAYLOADS_HEX TOKEN_LABEL HSM_KEYID KEYID PUBLIC_KEY_JSON

PAYLOADS_HEX has one hex payload per line. The PIN comes from P5_PIN (never argv), the
module from PYKCS11LIB, the token from SOFTHSM2_CONF. Prints one JSON line: count,
seconds, versions, and whether the signatures checked (the first, the last and every
1000th) verify with the public key.
"""

import json
import os
import sys
import time
from importlib.metadata import version

from securesystemslib.signer import HSMSigner, SSlibKey


def main():
    path, label, hsm_keyid, keyid, keyjson = sys.argv[1:6]
    payloads = [bytes.fromhex(line) for line in open(path) if line.strip()]
    public = SSlibKey.from_dict(keyid, json.loads(keyjson))
    signer = HSMSigner(int(hsm_keyid), public, lambda _msg: os.environ["P5_PIN"], label)
    start = time.perf_counter()
    sigs = [signer.sign(p) for p in payloads]
    seconds = time.perf_counter() - start
    checked = sorted({0, len(payloads) - 1, *range(0, len(payloads), 1000)})
    for i in checked:
        public.verify_signature(sigs[i], payloads[i])
    print(json.dumps({
        "count": len(payloads),
        "seconds": seconds,
        "verified": len(checked),
        "securesystemslib": version("securesystemslib"),
        "python_pkcs11": version("python-pkcs11"),
    }))


if __name__ == "__main__":
    main()
