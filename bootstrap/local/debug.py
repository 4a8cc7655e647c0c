"""`bootstrap --debug`: an error's cause chain and traceback, with secrets taken out.

A traceback shows our source lines (code, never values: locals are not captured) and
each exception's message. Messages may carry what a host or a file said: a YAML error
quotes the line it stopped at (a kubeconfig's ``client-key-data``), an HTTP error may
echo a header. So every line goes through ``redact`` before it is printed: PEM blocks,
bearer tokens and any long run of base64/URL-safe characters that mixes upper and lower
case (keys, certificates, tokens; not hex digests, paths or host names).
"""

from __future__ import annotations

import re
import traceback

REDACTED = "[redacted]"
_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(?:-----END [A-Z0-9 ]+-----|\Z)", re.S)
_BEARER = re.compile(r"(?i)\b(bearer)(\s+)[^\s\"',;]+")
_ASSIGNED = re.compile(r"(?i)\b(token|password|passwd|secret)([\"']?\s*[:=]\s*[\"']?)[^\s\"',;]+")
_BLOB = re.compile(r"[A-Za-z0-9+/_\-]{32,}={0,2}")


def _blob(match: re.Match[str]) -> str:
    text = match.group(0)
    mixed = any(c.isupper() for c in text) and any(c.islower() for c in text)
    return REDACTED if mixed else text


def redact(text: str) -> str:
    text = _PEM.sub(REDACTED, text)
    for pattern in (_BEARER, _ASSIGNED):
        text = pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return _BLOB.sub(_blob, text)


def format_chain(exc: BaseException) -> str:
    """The exception with its causes (``raise ... from``) and contexts, as Python prints
    them, each line redacted."""
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return "".join(redact(line) for line in lines)
