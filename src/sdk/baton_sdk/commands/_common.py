"""What every client command shares: connection options, output, errors, input files.

Heavy modules (grpc, the SDK, rich, yaml) are imported inside functions, so that
``baton --help`` and ``baton serve`` never load them.
"""

from __future__ import annotations

import functools
import json
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar

import click

if TYPE_CHECKING:
    from rich.console import Console

    from baton_sdk.models import Agent, Workflow
    from baton_sdk.sync import SyncBatonClient

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_SERVER = "localhost:50051"

# Exit codes, documented in docs/sdk.md.
EXIT_RUN_FAILED = 1
EXIT_USAGE = 2
EXIT_API_ERROR = 3
EXIT_TIMEOUT = 124
EXIT_INTERRUPTED = 130


class CommandFailed(Exception):
    """Ends a command with a message on stderr and a given exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Session:
    """One command's view of the server and of the terminal."""

    server: str
    api_key: str | None
    json_output: bool
    _client: SyncBatonClient | None = field(default=None, repr=False)
    _console: Console | None = field(default=None, repr=False)

    @property
    def client(self) -> SyncBatonClient:
        """The SDK client, connected on first use."""
        if self._client is None:
            from baton_sdk.sync import connect_sync

            # Lazy: a server that is down fails the first call (after the SDK's
            # retries) with a clear UNAVAILABLE, instead of a long connect wait.
            self._client = connect_sync(self.server, api_key=self.api_key, lazy=True)
        return self._client

    @property
    def console(self) -> Console:
        """Rich console on stdout (colours only on a terminal)."""
        if self._console is None:
            from rich.console import Console

            # Piped output has no terminal width; rich would assume 80 columns and
            # fold ids. Wide lines are kinder to grep and to files.
            width = None if sys.stdout.isatty() else 200
            self._console = Console(highlight=False, width=width)
        return self._console

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def show(self, renderable: Any) -> None:
        """Print a table or text; piped output loses the padding at line ends."""
        if self.console.is_terminal:
            self.console.print(renderable)
            return
        with self.console.capture() as captured:
            self.console.print(renderable)
        for line in captured.get().splitlines():
            click.echo(line.rstrip())

    def say(self, text: str, *, style: str | None = None) -> None:
        """Print a line of plain text (never read as rich markup)."""
        self.console.print(text, style=style, markup=False, soft_wrap=True)

    def print_json(self, data: Any) -> None:
        """Print ``data`` as indented JSON on stdout."""
        click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def message_json(message: Any) -> dict[str, Any]:
    """A result's REST JSON form (what ``--json`` prints), from its ``.proto``."""
    from baton_sdk._convert import message_dict

    return message_dict(message.proto)


def _fail(message: str, exit_code: int) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(exit_code)


def client_command(function: Callable[..., None]) -> Callable[..., None]:
    """Give a command ``--server``, ``--api-key`` and ``--json``, a :class:`Session` as
    first argument, and one translation of errors into messages and exit codes."""

    @click.option(
        "--server",
        envvar="BATON_SERVER",
        default=DEFAULT_SERVER,
        show_default=True,
        help="host:port of the Baton gRPC API (env BATON_SERVER).",
    )
    @click.option(
        "--api-key",
        envvar="BATON_API_KEY",
        default=None,
        help="API key sent with every call (env BATON_API_KEY).",
    )
    @click.option("--json", "json_output", is_flag=True, help="Print JSON for scripts.")
    @functools.wraps(function)
    def command(server: str, api_key: str | None, json_output: bool, **kwargs: Any) -> None:
        from baton_sdk.errors import BatonError, UnavailableError, WaitTimeoutError

        session = Session(server=server, api_key=api_key, json_output=json_output)
        try:
            function(session, **kwargs)
        except CommandFailed as failed:
            _fail(str(failed), failed.exit_code)
        except WaitTimeoutError as timeout:
            _fail(
                f"{timeout.message}; it goes on - follow it with: baton runs watch"
                f" {timeout.run_id}",
                EXIT_TIMEOUT,
            )
        except UnavailableError as error:
            _fail(f"cannot reach the Baton server at {server}: {error}", EXIT_API_ERROR)
        except BatonError as error:
            _fail(str(error), EXIT_API_ERROR)
        except ValueError as error:
            _fail(str(error), EXIT_USAGE)
        except KeyboardInterrupt:
            _fail("interrupted", EXIT_INTERRUPTED)
        finally:
            session.close()

    return command


def load_document(path: str) -> Any:
    """Read a JSON or YAML file (``-`` for stdin)."""
    import yaml

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise CommandFailed(f"cannot read {path}: {error.strerror}", EXIT_USAGE) from None
    try:
        if path.endswith(".json"):
            return json.loads(text)
        # YAML 1.1 reads JSON documents too.
        return yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as error:
        raise CommandFailed(f"{path} is not valid JSON or YAML: {error}", EXIT_USAGE) from None


def load_object(path: str) -> dict[str, Any]:
    """Read a JSON/YAML file that must hold one object."""
    document = load_document(path)
    if not isinstance(document, dict):
        raise CommandFailed(f"{path} must hold an object", EXIT_USAGE)
    return document


def checked_fields(
    body: Mapping[str, Any], allowed: set[str], *, read_only: set[str], what: str
) -> dict[str, Any]:
    """``body`` without the read-only fields of a fetched resource; unknown fields fail."""
    unknown = set(body) - allowed - read_only
    if unknown:
        raise CommandFailed(
            f"unknown {what} field(s): {', '.join(sorted(unknown))}"
            f" (expected: {', '.join(sorted(allowed))})",
            EXIT_USAGE,
        )
    return {key: value for key, value in body.items() if key in allowed}


def is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def resolve_agent(session: Session, reference: str) -> Agent:
    """The agent with this id or (not deleted) name."""
    if is_uuid(reference):
        return session.client.agents.get(reference)
    found = session.client.agents.find(reference)
    if found is None:
        raise CommandFailed(f"no agent named {reference!r}", EXIT_API_ERROR)
    return found


def resolve_workflow(session: Session, reference: str) -> Workflow:
    """The workflow with this id or (not deleted) name."""
    if is_uuid(reference):
        return session.client.workflows.get(reference)
    found = session.client.workflows.find(reference)
    if found is None:
        raise CommandFailed(f"no workflow named {reference!r}", EXIT_API_ERROR)
    return found


def parse_inputs(pairs: tuple[str, ...], base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Build run input from ``key=value`` pairs over an optional base object.

    Values are JSON when they parse as JSON (``n=5``, ``tags=["a"]``, ``ok=true``) and
    strings otherwise; dotted keys nest (``options.limit=100``).
    """
    data: dict[str, Any] = json.loads(json.dumps(base or {}))  # a deep copy
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise CommandFailed(f"--input {pair!r}: expected key=value", EXIT_USAGE)
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        target = data
        *parents, leaf = key.split(".")
        for parent in parents:
            child = target.setdefault(parent, {})
            if not isinstance(child, dict):
                raise CommandFailed(f"--input {pair!r}: {parent!r} is not an object", EXIT_USAGE)
            target = child
        target[leaf] = value
    return data


@contextmanager
def interruptible(run_id: str) -> Iterator[None]:
    """Turn Ctrl-C while following a run into a hint that the run goes on."""
    try:
        yield
    except KeyboardInterrupt:
        raise CommandFailed(
            f"stopped following; run {run_id} goes on - follow it with: baton runs watch {run_id}",
            EXIT_INTERRUPTED,
        ) from None
