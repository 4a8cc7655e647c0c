"""YAML text of our own documents, through libyaml when PyYAML has it.

PyYAML's pure-Python emitter needs ~7 ms for one kubeconfig; a run renders about fifteen
of them plus the manifests even when nothing changed, because it compares them with what
the hosts hold. libyaml (in PyYAML's wheels) writes the same bytes ~50x faster; the
golden tests hold both emitters to identical output. Documents written by users are not
read here: the inventory loader keeps the pure-Python parser for its line marks.
"""

from __future__ import annotations

from typing import Any

import yaml

_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def uses_libyaml() -> bool:
    return _DUMPER is not yaml.SafeDumper and _LOADER is not yaml.SafeLoader


def dump(value: Any, **options: Any) -> str:
    """yaml.safe_dump(value, **options), the same text, faster."""
    text: str = yaml.dump(value, Dumper=_DUMPER, **options)
    return text


def load(text: str | bytes) -> Any:
    """yaml.safe_load(text) for documents this tool wrote itself."""
    return yaml.load(text, Loader=_LOADER)
