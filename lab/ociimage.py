"""Container images without a registry: OCI image archives built from the lab's binaries.

No registry is reachable, and the manifests name ``registry.k8s.io/etcd:3.6.16-0`` etc.
For the real kubelet (``lab up --node kubelet``) every entry of the bin dir's image
store (``images/<repository>/<tag>`` -> binary) becomes an OCI image layout archive that
``ctr -n k8s.io images import`` reads: one uncompressed layer holding the static binary
where the official image has it (``/usr/local/bin/<name>``; ``/pause`` for the pause
image), a config with that entrypoint and a PATH, and the reference in the index's
``io.containerd.image.name`` annotation. A manifest naming another version or repository
has no image on the node, so its pod fails to pull, as on a real node without a registry.

Archives are cached beside the builds (``<cache>/oci/``), keyed by the reference and the
binary's build path, size and mtime (builds never change in place).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

from lab import kubebin

IMAGE_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
EPOCH = 0  # fixed mtimes: the same binary gives the same digests


def binary_path_in_image(repository: str) -> str:
    name = repository.rsplit("/", 1)[-1]
    return "/pause" if name == "pause" else f"/usr/local/bin/{name}"


def store_refs(bin_dir: Path) -> dict[str, Path]:
    """image reference -> binary, from the bin dir's ``images/`` tree."""
    root = bin_dir / "images"
    refs: dict[str, Path] = {}
    if not root.is_dir():
        return refs
    for entry in sorted(root.rglob("*")):
        if entry.is_file() and not entry.name.startswith("."):
            repository = entry.parent.relative_to(root).as_posix()
            refs[f"{repository}:{entry.name}"] = entry.resolve()
    return refs


def _dir_entry(name: str, mode: int = 0o755) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    info.mtime = EPOCH
    return info


def _write_layer(binary: Path, inside: str, out: Path) -> tuple[str, int]:
    """The layer tar (directories, /tmp, the binary); returns (sha256 hex, size)."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        parts = inside.strip("/").split("/")[:-1]
        for i in range(len(parts)):
            tar.addfile(_dir_entry("/".join(parts[: i + 1]) + "/"))
        for name, mode in (("etc/", 0o755), ("tmp/", 0o1777), ("var/", 0o755)):
            if name.rstrip("/") not in parts:
                tar.addfile(_dir_entry(name, mode))
        info = tarfile.TarInfo(inside.lstrip("/"))
        info.size = binary.stat().st_size
        info.mode = 0o755
        info.mtime = EPOCH
        with binary.open("rb") as fh:
            tar.addfile(info, fh)
    digest = hashlib.sha256()
    with out.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest(), out.stat().st_size


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = EPOCH
    tar.addfile(info, io.BytesIO(data))


def build_archive(ref: str, binary: Path, out: Path) -> None:
    """Write the OCI image layout archive of ``ref`` (one layer: ``binary``) to ``out``."""
    repository, tag = ref.rsplit(":", 1)
    inside = binary_path_in_image(repository)
    layer_tmp = out.with_name(f".{out.name}.layer.{os.getpid()}")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        layer_digest, layer_size = _write_layer(binary, inside, layer_tmp)
        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": [IMAGE_PATH], "Entrypoint": [inside], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
            "history": [{"created_by": f"bootstrap lab: {binary.name} at {inside}"}],
        }
        config_bytes = json.dumps(config, sort_keys=True).encode()
        config_digest = hashlib.sha256(config_bytes).hexdigest()
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {
                "mediaType": CONFIG_TYPE, "digest": f"sha256:{config_digest}",
                "size": len(config_bytes),
            },
            "layers": [
                {"mediaType": LAYER_TYPE, "digest": f"sha256:{layer_digest}", "size": layer_size}
            ],
        }
        manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
        manifest_digest = hashlib.sha256(manifest_bytes).hexdigest()
        index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": MANIFEST_TYPE,
                "digest": f"sha256:{manifest_digest}",
                "size": len(manifest_bytes),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": ref,
                    "org.opencontainers.image.ref.name": tag,
                },
            }],
        }
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
            _add_bytes(tar, "index.json", json.dumps(index, sort_keys=True).encode())
            tar.addfile(_dir_entry("blobs/"))
            tar.addfile(_dir_entry("blobs/sha256/"))
            _add_bytes(tar, f"blobs/sha256/{config_digest}", config_bytes)
            _add_bytes(tar, f"blobs/sha256/{manifest_digest}", manifest_bytes)
            info = tarfile.TarInfo(f"blobs/sha256/{layer_digest}")
            info.size = layer_size
            info.mode = 0o644
            info.mtime = EPOCH
            with layer_tmp.open("rb") as fh:
                tar.addfile(info, fh)
        tmp.rename(out)
    finally:
        layer_tmp.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)


def _archive_name(ref: str, binary: Path) -> str:
    st = binary.stat()
    key = hashlib.sha256(f"{ref}\0{binary}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    safe = ref.replace("/", "_").replace(":", "_")
    return f"{safe}-{key.hexdigest()[:12]}.tar"


def ensure_archives(bin_dir: Path, log: kubebin.Log) -> Path:
    """``<bin_dir>/oci/``: one archive link per image of the store (built where missing)."""
    cache = kubebin.cache_root() / "oci"
    cache.mkdir(parents=True, exist_ok=True)
    links = bin_dir / "oci"
    links.mkdir(exist_ok=True)
    wanted = set()
    for ref, binary in store_refs(bin_dir).items():
        archive = cache / _archive_name(ref, binary)
        if not archive.is_file():
            log(f"image {ref}: building its OCI archive from {binary.name}")
            build_archive(ref, binary, archive)
        link_name = ref.replace("/", "_").replace(":", "_") + ".tar"
        kubebin._link(links / link_name, archive)
        wanted.add(link_name)
    for stale in links.iterdir():
        if stale.name not in wanted and not stale.name.startswith("."):
            stale.unlink()
    return links
