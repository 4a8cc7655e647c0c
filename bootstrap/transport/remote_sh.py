"""The POSIX sh fragments the transport runs on hosts, built from quoted parts (pure).

Every path is passed through ``shlex.quote``; no file content ever goes into a script
(contents travel over SFTP), so scripts and the error messages quoting them carry no
secrets.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Sequence

from bootstrap.model import RemoteFile

q = shlex.quote

# New parent directories: 0755 like kubeadm's /etc/kubernetes and pki/, except the static
# pod directory, which kubeadm creates 0700 (only root and the kubelet need it).
DIR_MODE = 0o755
MANIFESTS_DIR_MODE = 0o700

_SHA256 = re.compile(r"[0-9a-f]{64}")


def parent_mode(directory: str) -> int:
    return (
        MANIFESTS_DIR_MODE if posixpath.basename(directory.rstrip("/")) == "manifests" else DIR_MODE
    )


def sh_c(command: str) -> str:
    """Run under /bin/sh whatever the login shell is (root's may be bash, a user's zsh)."""
    return f"sh -c {q(command)}"


def mkdir_parents(directory: str) -> str:
    """Create ``directory`` (and missing ancestors, 0755) if absent; existing modes untouched."""
    d = q(directory)
    return f"[ -d {d} ] || (umask 022 && mkdir -p -m {parent_mode(directory):04o} -- {d})"


TEMP_MARK = ".bootstrap-tmp-"
# What a write leaves behind when its connection drops between staging and rename:
# ".<name>.bootstrap-tmp-<16 hex>" (both write paths use a 16-hex token).
_STALE_TEMP = re.compile(r"\..+\.bootstrap-tmp-[0-9a-f]{16}")


def temp_name(target: str, token: str) -> str:
    """A dot-file beside the target: same filesystem (rename is atomic), ignored by the kubelet."""
    directory, name = posixpath.split(target)
    return posixpath.join(directory, f".{name}{TEMP_MARK}{token}")


def is_stale_temp(name: str) -> bool:
    """A leftover temp file of an interrupted write (a bare file name, not a path)."""
    return _STALE_TEMP.fullmatch(name) is not None


def remove_stale_temps(target: str) -> str:
    """rm the target's own leftover temps (the glob is the only unquoted part)."""
    directory, name = posixpath.split(target)
    return f"rm -f -- {q(posixpath.join(directory, '.' + name + TEMP_MARK))}*"


def remove_stale_staging(prefix: str) -> str:
    """Run as the SSH user: remove its own staging dirs left by dropped connections (they
    hold copies of keys). Never follows symlinks; only directories the user owns."""
    return (
        f"find {q(posixpath.dirname(prefix))} -maxdepth 1 -type d "
        f"-name {q(posixpath.basename(prefix) + '*')} -user \"$(id -u)\" "
        "-exec rm -rf -- {} +"
    )


def install_as_root(staged: str, staging_dir: str, target: str, mode: int, token: str) -> str:
    """Run as root: copy the staged file beside the target with owner root and ``mode``,
    rename it over the target (rename(2): atomic on one filesystem), and always remove the
    temp file and the staging dir, also on failure."""
    tmp = temp_name(target, token)
    return "\n".join(
        [
            "set -eu",
            "umask 077",
            f"trap 'rm -f -- {q(tmp)}; rm -rf -- {q(staging_dir)}' EXIT",
            mkdir_parents(posixpath.dirname(target)),
            remove_stale_temps(target),
            f"install -m {mode:04o} -o 0 -g 0 -- {q(staged)} {q(tmp)}",
            f"mv -f -T -- {q(tmp)} {q(target)}",
        ]
    )


def _batchable(path: str) -> bool:
    # sha256sum and stat print a name with a newline or a backslash escaped: such paths
    # (never ours, but any byte is allowed) are looked at one by one instead.
    return "\n" not in path and "\\" not in path


SHA_SECTION = "@sha256"
MODE_SECTION = "@mode"


def stat_script(paths: Sequence[str]) -> str:
    """sha256 and mode of every path, with one sha256sum and one stat for all of them.

    Output: first one line per path that is not a regular file, keyed by its index
    (``i<TAB>-<TAB>-`` when absent, ``i<TAB>notfile<TAB>-`` for a non-regular file), and
    ``i<TAB>sha256<TAB>octal-mode`` / ``i<TAB>!<TAB>!`` (unreadable) for the rare path that
    cannot be batched; then ``@sha256`` and sha256sum's lines for the regular files, then
    ``@mode`` and ``<mode> <name>`` lines. Two processes per host instead of two per file:
    a re-run compares ~30 files on every master before it decides it has nothing to do.
    """
    lines = [
        "st() {",
        '  if [ -f "$2" ]; then',
        '    if s=$(sha256sum < "$2") && m=$(stat -L -c %a -- "$2"); then',
        '      printf \'%s\\t%s\\t%s\\n\' "$1" "${s%% *}" "$m"',
        "    else printf '%s\\t!\\t!\\n' \"$1\"; fi",
        "  else other \"$1\" \"$2\"; fi",
        "}",
        "other() {",
        '  if [ -e "$2" ] || [ -L "$2" ]; then printf \'%s\\tnotfile\\t-\\n\' "$1"',
        "  else printf '%s\\t-\\t-\\n' \"$1\"; fi",
        "}",
        "set --",
    ]
    for i, path in enumerate(paths):
        if _batchable(path):
            quoted = q(path)
            lines.append(f'if [ -f {quoted} ]; then set -- "$@" {quoted}')
            lines.append(f"else other {i} {quoted}; fi")
        else:
            lines.append(f"st {i} {q(path)}")
    lines += [
        f"echo {SHA_SECTION}",
        '[ "$#" -eq 0 ] || sha256sum -- "$@" 2>/dev/null || :',
        f"echo {MODE_SECTION}",
        '[ "$#" -eq 0 ] || stat -L -c \'%a %n\' -- "$@" 2>/dev/null || :',
    ]
    return "\n".join(lines)


class StatParseError(ValueError):
    pass


def parse_stat(paths: Sequence[str], stdout: str) -> dict[str, RemoteFile | None]:
    """Parse ``stat_script`` output. Raises StatParseError naming the offending path."""
    seen: dict[int, RemoteFile | None] = {}
    head, sep, rest = stdout.partition(f"{SHA_SECTION}\n")
    sha_part, sep2, mode_part = rest.partition(f"{MODE_SECTION}\n")
    if not sep or not sep2:
        raise StatParseError("the answer lacks its sections")
    for line in head.splitlines():
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 3 or not fields[0].isdigit() or int(fields[0]) >= len(paths):
            raise StatParseError(f"unexpected line {line[:120]!r}")
        index, sha, mode = int(fields[0]), fields[1], fields[2]
        path = paths[index]
        if index in seen:
            raise StatParseError(f"{path} reported twice")
        seen[index] = _one_file(path, sha, mode, line)
    hashes = _named_lines(sha_part, "  ")
    modes = _named_lines(mode_part, " ")
    for index, path in enumerate(paths):
        if index in seen or not _batchable(path):
            continue
        if path not in hashes and path not in modes:
            raise StatParseError(f"no answer for {path}")
        seen[index] = _one_file(path, hashes.get(path, "!"), modes.get(path, "!"), path)
    missing = [paths[i] for i in range(len(paths)) if i not in seen]
    if missing:
        raise StatParseError(f"no answer for {missing[0]} ({len(missing)} path(s) missing)")
    return {paths[i]: seen[i] for i in range(len(paths))}


def _named_lines(text: str, separator: str) -> dict[str, str]:
    """``<value><separator><name>`` lines -> {name: value}."""
    out: dict[str, str] = {}
    for line in text.split("\n"):
        if not line:
            continue
        value, sep, name = line.partition(separator)
        if not sep:
            raise StatParseError(f"unexpected line {line[:120]!r}")
        out[name] = value
    return out


def _one_file(path: str, sha: str, mode: str, line: str) -> RemoteFile | None:
    if sha == "-":
        return None
    if sha == "notfile":
        raise StatParseError(f"{path} exists but is not a regular file")
    if sha == "!" or mode == "!":
        raise StatParseError(f"{path} exists but cannot be read")
    if _SHA256.fullmatch(sha) and re.fullmatch(r"[0-7]{1,4}", mode):
        return RemoteFile(sha256=sha, mode=int(mode, 8) & 0o7777)
    raise StatParseError(f"unexpected line for {path}: {line[:120]!r}")


def backup_script(paths: Sequence[str], backup_dir: str) -> str:
    """Copy (cp -p) those of ``paths`` that exist into ``backup_dir`` (created 0700 on demand),
    flat by basename - the caller guarantees basenames are unique."""
    b = q(backup_dir)
    lines = ["set -eu", "umask 077"]
    for p in paths:
        lines.append(f"if [ -e {q(p)} ]; then mkdir -p -m 0700 -- {b}; cp -p -- {q(p)} {b}/; fi")
    return "\n".join(lines)


def remove_script(paths: Sequence[str]) -> str:
    return "rm -f -- " + " ".join(q(p) for p in paths)
