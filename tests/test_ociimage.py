"""lab/ociimage.py: the OCI archives the kubelet-mode lab imports into containerd.

The real check is containerd importing and running them (tests/test_kubelet_lab.py);
this one pins the layout offline: digests that match their blobs, the reference in the
``io.containerd.image.name`` annotation, one layer holding the binary where the official
image has it, executable, with the entrypoint pointing at it.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from lab import ociimage


def blobs(archive: Path) -> tuple[dict[str, bytes], dict[str, bytes]]:
    files: dict[str, bytes] = {}
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.isfile():
                handle = tar.extractfile(member)
                assert handle is not None
                files[member.name] = handle.read()
    by_digest = {
        "sha256:" + name.rsplit("/", 1)[1]: data
        for name, data in files.items() if name.startswith("blobs/sha256/")
    }
    return files, by_digest


@pytest.mark.parametrize(
    ("ref", "inside"),
    [
        ("registry.k8s.io/kube-apiserver:v1.37.2", "usr/local/bin/kube-apiserver"),
        ("registry.k8s.io/etcd:3.7.0-0", "usr/local/bin/etcd"),
        ("registry.k8s.io/pause:3.10.2", "pause"),
    ],
)
def test_archive_layout(tmp_path: Path, ref: str, inside: str) -> None:
    binary = tmp_path / "prog"
    binary.write_bytes(b"\x7fELF fake program " * 1000)
    archive = tmp_path / "image.tar"
    ociimage.build_archive(ref, binary, archive)
    files, by_digest = blobs(archive)
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    for digest, data in by_digest.items():  # every blob is named by its own sha256
        assert digest == "sha256:" + hashlib.sha256(data).hexdigest()
    (entry,) = json.loads(files["index.json"])["manifests"]
    assert entry["annotations"]["io.containerd.image.name"] == ref
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == ref.rsplit(":", 1)[1]
    manifest = json.loads(by_digest[entry["digest"]])
    assert entry["size"] == len(by_digest[entry["digest"]])
    config = json.loads(by_digest[manifest["config"]["digest"]])
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == ociimage.LAYER_TYPE
    assert config["rootfs"]["diff_ids"] == [layer["digest"]]  # uncompressed: same digest
    assert config["config"]["Entrypoint"] == ["/" + inside]
    assert any(e.startswith("PATH=") for e in config["config"]["Env"])
    with tarfile.open(fileobj=io.BytesIO(by_digest[layer["digest"]])) as tar:
        member = tar.getmember(inside)
        assert member.mode & 0o111 and member.isfile()
        handle = tar.extractfile(member)
        assert handle is not None and handle.read() == binary.read_bytes()
        assert tar.getmember("tmp").mode == 0o1777


def test_same_binary_same_digests(tmp_path: Path) -> None:
    binary = tmp_path / "etcd"
    binary.write_bytes(b"same bytes")
    first, second = tmp_path / "a.tar", tmp_path / "b.tar"
    ociimage.build_archive("registry.k8s.io/etcd:3.7.0-0", binary, first)
    ociimage.build_archive("registry.k8s.io/etcd:3.7.0-0", binary, second)
    assert first.read_bytes() == second.read_bytes()


def test_store_refs_reads_the_image_store(tmp_path: Path) -> None:
    target = tmp_path / "build" / "kube-scheduler"
    target.parent.mkdir()
    target.write_bytes(b"x")
    link = tmp_path / "bin" / "images" / "registry.k8s.io" / "kube-scheduler" / "v1.37.2"
    link.parent.mkdir(parents=True)
    link.symlink_to(target)
    assert ociimage.store_refs(tmp_path / "bin") == {
        "registry.k8s.io/kube-scheduler:v1.37.2": target.resolve()
    }
