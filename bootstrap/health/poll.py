"""Named waits: poll a probe until it says yes, or time out with the last error seen."""

from __future__ import annotations

import time
from collections.abc import Callable

from bootstrap.errors import BootstrapError, WaitTimeout

Probe = Callable[[], tuple[bool, str]]


def wait_until(
    description: str,
    probe: Probe,
    timeout: float,
    interval: float = 0.5,
    on_progress: Callable[[str], None] | None = None,
) -> None:
    """Call ``probe`` every ``interval`` seconds until it returns (True, ...).

    A probe that raises one of our errors (BootstrapError) counts as "not yet", with the
    error as its message: waiting for etcd means its connection is refused for a while.
    Anything else is a bug and propagates. ``on_progress`` hears what we wait for and
    each new state (only when the message changes, so the output stays short). On
    timeout, WaitTimeout names the wait and carries the last message.
    """
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    reported: str | None = None
    if on_progress:
        on_progress(f"waiting for {description} (up to {timeout:g}s)")
    while True:
        try:
            ok, message = probe()
        except BootstrapError as exc:
            ok, message = False, str(exc)
        if ok:
            if on_progress:
                on_progress(f"{description}: {message}" if message else f"{description}: ok")
            return
        last = message or last
        if on_progress and last != reported:
            on_progress(f"still waiting for {description}: {last}")
            reported = last
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(
                f"timed out after {timeout:g}s waiting for {description}; last error: {last}",
                hint="see the last error above; raise the timeout in the inventory's "
                "`timeouts:` section if the hosts are just slow",
            )
        time.sleep(min(interval, remaining))
