"""Fuzz Baton's REST API through Envoy with schemathesis, driven by the OpenAPI document.

    ./dev serve &                                  # REST on http://127.0.0.1:8000
    .venv/bin/python bench/fuzz.py --examples 500  # then read its report

Every operation of ``gen/openapi/baton.openapi.json`` gets generated requests: valid
ones, near-misses of every constraint (the coverage phase), random ones, and sequences
that follow the document's links (create an agent, then get, update and delete it).
A response fails the run if it is a 5xx, or its status, content type or body is not
what the document says. The event streams (``.../events``, Server-Sent Events that last
as long as the run) are left out; tests/test_rest_events.py covers them.

The test suite runs the same command, bounded (tests/test_rest_fuzz.py).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "gen" / "openapi" / "baton.openapi.json"
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)


def command(url: str, *, examples: int, seed: int | None = None) -> list[str]:
    """The schemathesis command line for the API at ``url``."""
    schemathesis = Path(sys.executable).with_name("schemathesis")
    return [
        str(schemathesis),
        "run",
        str(DOCUMENT),
        "--url",
        url,
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(examples),
        "--exclude-path-regex",
        ".*/events$",
        # One worker: schemathesis' threads trip a CPython 3.11 bug in ast.parse
        # ("AST constructor recursion depth mismatch").
        "--workers",
        "1",
        "--request-timeout",
        "30",
        *(["--seed", str(seed)] if seed is not None else []),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="Baton's REST URL")
    parser.add_argument("--examples", type=int, default=200, help="cases per operation")
    parser.add_argument("--seed", type=int, help="repeat an earlier run")
    args = parser.parse_args()
    return subprocess.run(command(args.url, examples=args.examples, seed=args.seed)).returncode


if __name__ == "__main__":
    sys.exit(main())
