"""The process's standard streams: closed descriptors, broken pipes, report lines.

Imported by the CLI at start-up, so it imports nothing heavy.
"""

from __future__ import annotations

import contextlib
import os
import sys

from bootstrap.errors import OperationError, shorten

MAX_REPORT_LINE = 2000  # a last bound on what one message line can echo


class OutputClosed(OperationError):
    """Standard output went away (a closed pipe, a full disk): the results were not
    delivered, so the command fails (exit 1) whatever it did before."""


def guard_std_streams() -> bool:
    """Open /dev/null on a closed stdin, stdout or stderr; True when stdout was closed.

    A closed standard descriptor is handed to the next file the process opens: a state
    file or a socket would then receive progress lines or JSON. With /dev/null in its
    place that cannot happen; the CLI refuses a closed stdout before doing any work."""
    stdout_closed = False
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        null = os.open(os.devnull, os.O_RDWR)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
        setattr(sys, name, open(fd, mode, closefd=False))  # noqa: SIM115 (lives as long as the process)
        stdout_closed = stdout_closed or fd == 1
    return stdout_closed


def write_stdout(text: str) -> None:
    """A result line on stdout; OutputClosed when it cannot be delivered.

    After a failure stdout is pointed at /dev/null, so the interpreter's own flush at
    exit does not print "Exception ignored ... BrokenPipeError" after our message."""
    try:
        print(text, flush=True)
    except (OSError, ValueError) as exc:
        cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        _discard_stdout()
        raise OutputClosed(
            f"cannot write to standard output: {cause}",
            hint="the reader of the output went away (a closed pipe, e.g. `| head`) or "
            "its file system is full; the results were not delivered",
        ) from None


def _discard_stdout() -> None:
    with contextlib.suppress(OSError, ValueError, AttributeError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)


def say(text: str) -> None:
    """Lines on stderr that never raise: stderr may be a closed pipe, and a progress or
    error line nobody can read is no reason to abort a rollout half way."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        print(text, file=sys.stderr, flush=True)


def report_lines(message: str, hint: str | None) -> str:
    """An error for stderr: the message, then one hint per line (several hosts' hints are
    never joined into one line), each line bounded."""
    lines = message.splitlines() or [""]
    if hint:
        hints = hint.splitlines()
        lines += [f"  hint: {hints[0]}", *(f"        {h}" for h in hints[1:])]
    return "\n".join(shorten(line, MAX_REPORT_LINE) for line in lines)
