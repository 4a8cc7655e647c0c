"""Progress output: one line per event, tagged by phase and host, safe across threads.

Progress goes to stderr so that tables and JSON on stdout stay machine-readable.
Never pass secrets here: callers print paths and digests, not contents.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from typing import TextIO


class Console:
    def __init__(
        self, stream: TextIO | None = None, *, verbose: bool = False, quiet: bool = False
    ) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._lock = threading.Lock()
        self.verbose = verbose
        self.quiet = quiet

    def event(self, phase: str, message: str, host: str | None = None) -> None:
        if self.quiet:
            return
        where = f" {host}:" if host else ""
        line = f"[{phase}]{where} {message}"
        # Progress is best effort: stderr closed or a pipe nobody reads any more is no
        # reason to abort a rollout half way (the exit code still tells).
        with self._lock, contextlib.suppress(OSError, ValueError):
            print(line, file=self._stream, flush=True)

    def detail(self, phase: str, message: str, host: str | None = None) -> None:
        if self.verbose:
            self.event(phase, message, host)

    def out(self, text: str) -> None:
        """Results (tables, JSON) go to stdout; OutputClosed when they cannot be delivered."""
        from bootstrap.local.stdio import write_stdout

        with self._lock:
            write_stdout(text)
