"""Server processes that Baton starts and that must never outlive it.

:func:`spawn` starts a program (the embedded PostgreSQL and Redis, Envoy) through a tiny
launcher that arms ``PR_SET_PDEATHSIG``, so the kernel signals the child if Baton dies
without cleaning up (SIGKILL, OOM kill). Each child runs in its own session and process
group, with its output appended to a log file.

Linux only (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ChildProcess", "log_tail", "spawn"]

_LOG_TAIL_LINES = 25

# Runs in the child between fork and the server's exec. A tiny interpreter instead of
# Popen(preexec_fn=...): preexec_fn is unsafe once the parent has threads (gRPC, asyncio's
# child watcher), since the forked child may inherit a lock held by another thread.
# Privileges are dropped here and not with Popen(user=...) because the interpreter may live
# where the service account cannot read it (e.g. under /root/.pyenv), and because any
# change of credentials clears PR_SET_PDEATHSIG, so the signal must be armed after it.
# The kernel sends that signal when the *thread* that forked the server ends; asyncio forks
# on the event-loop thread, which outlives the children it starts.
_LAUNCHER = """\
import ctypes, os, sys
death_signal, parent, uid, gid = (int(arg) for arg in sys.argv[1:5])
if uid >= 0:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
PR_SET_PDEATHSIG = 1
if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, death_signal, 0, 0, 0) != 0:
    raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
if os.getppid() != parent:
    # Baton died before the signal was armed: nobody would ever stop this server.
    sys.exit(70)
os.execv(sys.argv[5], sys.argv[5:])
"""


@dataclass
class ChildProcess:
    """A server child process and where its output goes."""

    name: str
    process: asyncio.subprocess.Process
    stop_signal: signal.Signals
    log_path: Path
    log_offset: int

    def kill(self) -> None:
        """SIGKILL the server and everything it started (its own process group)."""
        # The group outlives its leader while members remain, and Linux does not hand out
        # a pid still in use as a group id, so this cannot hit an unrelated process.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def log_tail(self) -> str:
        """The last lines the server wrote since it was started."""
        return log_tail(self.log_path, self.log_offset)

    def exit_message(self) -> str:
        return (
            f"{self.name} exited during startup with code {self.process.returncode}; "
            f"last lines of {self.log_path}:\n{self.log_tail()}"
        )


async def spawn(
    name: str,
    argv: Sequence[str],
    *,
    cwd: Path,
    log_path: Path,
    death_signal: signal.Signals,
    stop_signal: signal.Signals,
    run_as: tuple[int, int] | None = None,
    env: Mapping[str, str] | None = None,
) -> ChildProcess:
    """Start ``argv`` through the launcher, with its output appended to ``log_path``.

    ``death_signal`` is what the kernel sends the child if Baton dies; ``stop_signal`` is
    what a clean stop sends. ``run_as`` is a (uid, gid) to switch to before the exec.
    """
    log_fd, log_offset = _open_log(log_path, f"starting {name}: {shlex.join(argv)}")
    uid, gid = run_as if run_as is not None else (-1, -1)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",  # ignore PYTHON* variables and user site-packages
            "-S",  # skip site: the launcher needs only the standard library, and starts faster
            "-c",
            _LAUNCHER,
            str(int(death_signal)),
            str(os.getpid()),
            str(uid),
            str(gid),
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            # Own session and process group: a Ctrl-C in Baton's terminal must not reach
            # the servers directly (Baton may still need them while it shuts down), and a
            # server with its helpers can be killed as one group.
            start_new_session=True,
            env=dict(env) if env is not None else None,
        )
    finally:
        os.close(log_fd)
    return ChildProcess(
        name=name,
        process=process,
        stop_signal=stop_signal,
        log_path=log_path,
        log_offset=log_offset,
    )


def _open_log(path: Path, headline: str) -> tuple[int, int]:
    """Open ``path`` for appending and mark where this start's output begins."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %z")
    os.write(fd, f"\n=== {stamp} baton (pid {os.getpid()}): {headline}\n".encode())
    return fd, os.lseek(fd, 0, os.SEEK_END)


def log_tail(path: Path, offset: int) -> str:
    """The last lines ``path`` received since ``offset``."""
    try:
        with path.open("rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(max(offset, size - 16384))
            text = log.read().decode(errors="replace")
    except OSError as error:
        return f"(log unreadable: {error})"
    lines = text.splitlines()[-_LOG_TAIL_LINES:]
    return "\n".join(lines) if lines else "(no output)"
