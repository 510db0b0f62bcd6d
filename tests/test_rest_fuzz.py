"""schemathesis over every REST operation of the OpenAPI document, through the real
Envoy in front of the test server (bench/fuzz.py, bounded): no 5xx, and every status,
content type and body is one the document describes."""

from __future__ import annotations

import asyncio
import os

from sqlalchemy.ext.asyncio import AsyncEngine

from bench.fuzz import command
from tests.test_openapi import DOCUMENT

EXAMPLES = int(os.environ.get("BATON_REST_FUZZ_EXAMPLES", "10"))


async def test_schemathesis_finds_nothing_wrong_with_any_operation(
    rest_url: str, engine: AsyncEngine
) -> None:
    process = await asyncio.create_subprocess_exec(
        *command(rest_url, examples=EXAMPLES, seed=1),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    report = output.decode(errors="replace")
    assert process.returncode == 0, report
    # Every operation but the event streams was tried.
    streams = [path for path in DOCUMENT["paths"] if path.endswith("/events")]
    operations = sum(len(verbs) for verbs in DOCUMENT["paths"].values())
    assert f"{operations - len(streams)} selected" in report, report
    assert " passed" in report
