"""Value types shared by the pure core and the transport.

A master's desired state is a value: remote path -> FileSpec. Push compares it with
what the host has (sha256 + mode) and writes only what differs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class FileSpec:
    """One file as it must be on a host."""

    path: str  # absolute path on the host
    content: bytes = field(repr=False)
    mode: int  # e.g. 0o600
    secret: bool = False  # key material: never printed, never diffed

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


# remote path -> FileSpec
HostTree = Mapping[str, FileSpec]


def tree_of(files: list[FileSpec] | tuple[FileSpec, ...]) -> dict[str, FileSpec]:
    """Index files by path; a path given twice is a programming error."""
    tree: dict[str, FileSpec] = {}
    for spec in files:
        if spec.path in tree:
            raise ValueError(f"duplicate desired file {spec.path}")
        tree[spec.path] = spec
    return tree
