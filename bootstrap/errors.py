"""One exception tree for the whole tool.

Every error carries a message and an optional hint. ``exit_code`` says how the CLI
ends: 2 for bad input (inventory, flags, local state the user must fix), 1 for an
operation that failed (a host, a check, a timeout). This module imports nothing else
from the package.
"""

from __future__ import annotations

# A value echoed in a message is cut to this many characters: what the user gave can be
# megabytes long (a pasted file as clusterName, a fuzzer) and a message must stay readable.
ECHO_LIMIT = 80
# An inventory with thousands of problems lists the first ones; the rest are counted.
MAX_LISTED_PROBLEMS = 50


def shorten(text: str, limit: int = ECHO_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def plural(count: int, word: str, words: str | None = None) -> str:
    """"1 voter", "3 voters" (``words`` for irregular plurals)."""
    return f"{count} {word if count == 1 else words or word + 's'}"


def echo(value: object, limit: int = ECHO_LIMIT) -> str:
    """A user-given value quoted for a message (repr), cut to ``limit`` characters.

    The one helper every message that repeats user input goes through."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text)
    quoted = repr(text[:limit])
    return f"{quoted[:-1]}...{quoted[-1]} ({len(text)} characters)"


class BootstrapError(Exception):
    """Base of every error the tool reports to the user (never shown as a traceback)."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None, host: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.host = host

    def __str__(self) -> str:
        prefix = f"{self.host}: " if self.host else ""
        return prefix + self.message


# --- bad input (exit 2) -------------------------------------------------------------


class InputError(BootstrapError):
    """The user gave us something we cannot work with. Nothing was changed."""

    exit_code = 2


class InventoryError(InputError):
    """The inventory does not validate. ``problems`` lists every finding."""

    def __init__(
        self, message: str, problems: list[str] | None = None, *, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.problems = problems or []

    def __str__(self) -> str:
        if not self.problems:
            return self.message
        shown = self.problems[:MAX_LISTED_PROBLEMS]
        lines = [self.message, *(f"  - {p}" for p in shown)]
        if len(self.problems) > len(shown):
            lines.append(f"  ... and {len(self.problems) - len(shown)} more")
        return "\n".join(lines)


class StateError(InputError):
    """The local state directory holds inconsistent material (refused, never regenerated)."""


class TemplateError(InputError):
    """A manifest template failed to render; names the template and line."""


class UsageError(InputError):
    """Bad command-line usage (unknown phase, unknown master, ...)."""


# --- failed operations (exit 1) -------------------------------------------------------


class OperationError(BootstrapError):
    """Something we tried did not work."""


class TransportError(OperationError):
    """Base of SSH/connection failures. Always names the host."""


class HostUnreachable(TransportError):
    pass


class AuthenticationFailed(TransportError):
    pass


class IdentityFileError(InputError, AuthenticationFailed):
    """The inventory's SSH identity file cannot be used (missing, not a file, readable by
    others, encrypted, not a key). Bad input, checked before any connection: exit 2.
    Still an AuthenticationFailed for callers that handle login problems."""


class HostKeyUnknown(TransportError):
    """The host's key is not in known_hosts and trust-on-first-use was not requested."""


class HostKeyMismatch(TransportError):
    """The host presented a different key than known_hosts records."""


class OperationTimeout(TransportError):
    pass


class RemoteCommandFailed(TransportError):
    def __init__(
        self,
        message: str,
        *,
        host: str | None = None,
        exit_status: int | None = None,
        stderr: str = "",
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint, host=host)
        self.exit_status = exit_status
        self.stderr = stderr


class PreflightFailed(OperationError):
    pass


class EtcdError(OperationError):
    """An etcd call failed (connection, TLS, or an RPC error)."""


class WaitTimeout(OperationError):
    """A named wait ran out of time. The message carries the last state seen.

    Raised only by bootstrap.health.poll, the one waiting primitive."""


class PodCannotStart(OperationError):
    """The node reports a static pod that waiting will not bring up (its image is not on
    the node, or the kubelet gave up on it): the wait ends early with the node's reason."""


class APIRequestFailed(OperationError):
    """The apiserver refused a request we must make (e.g. creating an RBAC binding)."""

