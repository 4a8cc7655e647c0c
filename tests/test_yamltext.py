"""bootstrap.local.yamltext writes exactly what PyYAML's pure-Python emitter writes.

The kubeconfigs and the encryption config are compared with the hosts' copies on every
run, so a byte of difference between the two emitters would show as a change (and a
restart) after an upgrade of PyYAML or on a machine without libyaml.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bootstrap.local import yamltext
from bootstrap.pki import ensure_pki
from bootstrap.pki.encryption import encryption_config
from tests.pki_support import NOW, make_inventory


def test_libyaml_is_used_when_present() -> None:
    if not getattr(yaml, "__with_libyaml__", False):
        pytest.skip("this PyYAML has no libyaml: yamltext falls back to the Python emitter")
    assert yamltext.uses_libyaml()


def test_kubeconfigs_are_byte_identical_to_the_python_emitter(tmp_path: Path) -> None:
    inventory = make_inventory(cluster_name="lab")
    pki = ensure_pki(inventory, tmp_path / "state", now=NOW)
    files = pki.kubeconfig_files(inventory.masters[0].name)
    assert len(files) >= 4
    for path, spec in files.items():
        document = yaml.safe_load(spec.content)
        again = yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=1 << 30)
        assert spec.content == again.encode(), path
        assert yamltext.load(spec.content) == document


def test_encryption_config_is_byte_identical_to_the_python_emitter() -> None:
    text = encryption_config("c2VjcmV0LWtleS1vZi0zMi1ieXRlcy4uLi4uLi4uLi4=")
    document = yaml.safe_load(text)
    assert text == yaml.safe_dump(document, sort_keys=False, default_flow_style=False).encode()
