#!/usr/bin/env python3
"""Vendor the browser assets of Baton's API pages: Swagger UI (``/docs``) and ReDoc
(``/redoc``).

The pages must work with no network, so their scripts ship inside the server package
(``src/server/baton_server/web/vendor``) instead of coming from a CDN. They are taken
from the npm registry's tarballs of the pinned releases below, checked against the
registry's integrity hash, and recorded here by SHA-256, so that ``--check`` (run by
``./dev lint``) proves, offline, that the committed files are exactly those releases.

Usage (from the repository root)::

    python scripts/vendor_web.py           # fetch the pinned releases, (re)write vendor/
    python scripts/vendor_web.py --check   # only check the committed files' hashes

To upgrade: change a version and its integrity (``npm view <name>@<version> dist``), run
without ``--check``, and copy the printed hashes into ``FILES``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "src" / "server" / "baton_server" / "web" / "vendor"

#: npm package -> (version, the registry's sha512 integrity of its tarball).
PACKAGES = {
    "swagger-ui-dist": (
        "5.35.0",
        "sha512-U06rpMtW9V3XPGOBeamTUSr0Z09jMX4IJuANpE/EZbAhw0G8CgwrzU4YmXkn/h0wCDNsXdGarTNNHC3sU8yVUQ==",
    ),
    "redoc": (
        # Not 2.5.3+ or 3.x: they load a logo from Redocly's CDN.
        "2.5.2",
        "sha512-sTJfItvRkcDTojB6wdLN4M+Ua6mlZwElV21Tf8Mn7IbQF/1Os6GvgQpZyLWPGZZHbhy7GC1Or1hTMHfz1vKh5A==",
    ),
}

#: Vendored file -> (npm package, path in its tarball, SHA-256 of the content).
FILES = {
    "swagger-ui-bundle.js": (
        "swagger-ui-dist",
        "package/swagger-ui-bundle.js",
        "e6a898692f2d768e807c3ba4626068a69a2c5dd960dd6c76f3e4d3a3de180af2",
    ),
    "swagger-ui.css": (
        "swagger-ui-dist",
        "package/swagger-ui.css",
        "5ed08757e53da3e026d6cbecc61fe5d43585c9560b302d534ad56692519a273d",
    ),
    "swagger-ui.LICENSE": (
        "swagger-ui-dist",
        "package/LICENSE",
        "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30",
    ),
    "swagger-ui.NOTICE": (
        "swagger-ui-dist",
        "package/NOTICE",
        "0d20d1adef18aee3f40dd258172155521ce702ac445cb5f7b7d60ed32dad2fb2",
    ),
    "redoc.standalone.js": (
        "redoc",
        "package/bundles/redoc.standalone.js",
        "6beb5aea23b71d09122ee35de8f326e38aec050e774f3bfba1f34e5c36608986",
    ),
    "redoc.LICENSE": (
        "redoc",
        "package/LICENSE",
        "d3026d549cf68ab7355bcfa85877bf8f845b3334a7efbfdc63936432fb34ff0e",
    ),
}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tarball(package: str, directory: Path) -> tarfile.TarFile:
    version, integrity = PACKAGES[package]
    packed = subprocess.run(
        ["npm", "pack", f"{package}@{version}", "--json", "--pack-destination", str(directory)],
        check=True,
        capture_output=True,
        text=True,
    )
    (described,) = json.loads(packed.stdout)
    data = (directory / described["filename"]).read_bytes()
    digest = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != integrity:
        raise SystemExit(f"{package}@{version}: tarball integrity {digest} != pinned {integrity}")
    return tarfile.open(fileobj=io.BytesIO(data))


def vendor() -> None:
    VENDOR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tarballs = {package: _tarball(package, Path(tmp)) for package in PACKAGES}
        for name, (package, member, _) in FILES.items():
            extracted = tarballs[package].extractfile(member)
            if extracted is None:
                raise SystemExit(f"{member} is not a file in {package}")
            data = extracted.read()
            (VENDOR / name).write_bytes(data)
            print(f"{name}: {_sha256(data)}")


def check() -> int:
    wrong = [
        name
        for name, (_, _, digest) in FILES.items()
        if not (VENDOR / name).is_file() or _sha256((VENDOR / name).read_bytes()) != digest
    ]
    for name in wrong:
        print(
            f"vendored web asset differs from its pinned release: {VENDOR / name}", file=sys.stderr
        )
    if wrong:
        print("Run `python scripts/vendor_web.py`.", file=sys.stderr)
    return 1 if wrong else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check the committed files")
    args = parser.parse_args()
    if args.check:
        return check()
    vendor()
    return 0


if __name__ == "__main__":
    sys.exit(main())
