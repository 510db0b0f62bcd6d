"""Run the echo agent as a real subprocess on a loopback port.

Usage::

    with AgentProcess() as agent:
        url = agent.start(mode="echo", health=True, protocol_version="1.0")
        ...  # talk to `url`
    # stopped here

The agent binds port 0 itself and reports the port it got (``READY <port>``), so
there is no window in which another process can take a port picked for it.
"""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Literal, Self

ECHO_AGENT = Path(__file__).with_name("echo_agent.py")

Mode = Literal["echo", "fail", "sleep", "flaky"]
ProtocolVersion = Literal["1.0", "0.3"]
RequestHandler = Literal["default", "legacy"]


class AgentProcessError(RuntimeError):
    """The agent process failed to start or to stop."""


def unused_loopback_port() -> int:
    """Return a loopback port that nothing listens on right now.

    Good for "dead agent" URLs; racy as a port to bind later, which is why the
    agent itself is started on port 0.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AgentProcess:
    """One echo-agent subprocess: start it, learn its URL, stop it."""

    def __init__(self, *, host: str = "127.0.0.1", startup_timeout: float = 20.0) -> None:
        """Prepare (but do not start) an agent bound to ``host``."""
        self.host = host
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self.url: str | None = None
        self._process: subprocess.Popen[str] | None = None
        self._stderr: IO[str] | None = None

    def start(
        self,
        *,
        mode: Mode = "echo",
        health: bool = True,
        protocol_version: ProtocolVersion = "1.0",
        request_handler: RequestHandler = "default",
        port: int = 0,
    ) -> str:
        """Start the agent and wait until it serves; return its base URL.

        ``request_handler="legacy"`` roughly halves the agent's CPU per request
        (see echo_agent.py). ``port`` 0 lets the agent pick a free port; pass a
        fixed port to bring an agent back on the URL a stopped one had.
        """
        if self._process is not None:
            raise AgentProcessError("agent already started; stop() it first")
        command = [
            sys.executable,
            str(ECHO_AGENT),
            "--host",
            self.host,
            "--port",
            str(port),
            "--mode",
            mode,
            "--protocol-version",
            protocol_version,
            "--request-handler",
            request_handler,
            "--exit-on-stdin-eof",
        ]
        if not health:
            command.append("--no-health")
        # stderr goes to a file, not a pipe: nobody drains it while tests run,
        # and a full pipe would block the agent. It lives until stop(), so no
        # `with` block fits.
        self._stderr = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            self.port = self._wait_ready(self._process)
        except BaseException:
            self.stop()
            raise
        url_host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{url_host}:{self.port}/"
        return self.url

    def _wait_ready(self, process: subprocess.Popen[str]) -> int:
        assert process.stdout is not None
        lines: queue.Queue[str | None] = queue.Queue()
        stdout = process.stdout

        def pump() -> None:
            # Keep draining after READY so a chatty agent can never fill the pipe.
            for line in stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, name="agent-stdout", daemon=True).start()
        deadline = time.monotonic() + self.startup_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AgentProcessError(
                    f"agent not ready after {self.startup_timeout}s\n{self.stderr_text()}"
                )
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                code = process.wait()
                raise AgentProcessError(
                    f"agent exited with code {code} before READY\n{self.stderr_text()}"
                )
            if line.startswith("READY "):
                return int(line.split()[1])

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop the agent (SIGTERM, then SIGKILL); return its exit code."""
        process, self._process = self._process, None
        code: int | None = None
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    code = process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    code = process.wait()
            else:
                code = process.returncode
            # stdout belongs to the pump thread, which ends at EOF by itself;
            # closing it here would race that thread's read.
            if process.stdin is not None:
                process.stdin.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        self.url = None
        return code

    def stderr_text(self) -> str:
        """Everything the agent wrote to stderr so far (for failure messages)."""
        if self._stderr is None:
            return ""
        self._stderr.flush()
        self._stderr.seek(0)
        text = self._stderr.read()
        self._stderr.seek(0, os.SEEK_END)
        return text

    @property
    def pid(self) -> int | None:
        """The agent's process id while it runs."""
        return self._process.pid if self._process is not None else None

    def __enter__(self) -> Self:
        """Return self; call :meth:`start` inside the block."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the agent if it is still running."""
        self.stop()
