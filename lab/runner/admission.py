"""Admission: what a real node would refuse or fail to set up for a static pod.

Two checks, in this order:

1. Every absolute path a container's command line names must be visible inside the
   container, i.e. lie under one of that container's volumeMounts whose volume is a hostPath
   of the pod. A process-mode runner sees the whole host filesystem, so without this check
   a manifest that forgot a mount would work in the lab and fail on a real node.
   Tokens checked (command[1:] + args): `--flag=/abs/path`, a bare `/abs/path`, and each
   comma-separated element of either that starts with `/`. URLs (`https://...`) and
   `name=/path` elements are not paths. command[0] (the binary) is exempt.
2. hostPath volumes exist or are creatable per their `type`, with the kubelet's modes:
   DirectoryOrCreate -> mkdir 0755 (parents too); FileOrCreate -> empty file 0644 (parents
   0755); Directory/File/Socket/CharDevice/BlockDevice -> must exist with that type;
   "" or missing -> no check.
"""

from __future__ import annotations

import os
import stat
from typing import Any


class AdmissionError(Exception):
    """The pod cannot run on this host; the message names the reason."""


def _path_candidates(token: str) -> list[tuple[str | None, str]]:
    """(flag, path) pairs named by one argument token."""
    flag: str | None = None
    value = token
    if token.startswith("-") and "=" in token:
        flag, value = token.split("=", 1)
    return [(flag, part) for part in value.split(",") if part.startswith("/")]


def _is_under(path: str, mount_path: str) -> bool:
    path = os.path.normpath(path)
    mount_path = os.path.normpath(mount_path)
    return path == mount_path or path.startswith(mount_path.rstrip("/") + "/")


def check_mounts(pod: dict[str, Any]) -> None:
    spec = pod["spec"]
    host_paths = {
        v["name"] for v in spec.get("volumes") or [] if isinstance(v.get("hostPath"), dict)
    }
    problems: list[str] = []
    for container in spec["containers"]:
        mounts: list[str] = []
        for mount in container.get("volumeMounts") or []:
            if mount.get("name") not in host_paths:
                problems.append(
                    f"container {container['name']}: volumeMount {mount.get('name')!r} "
                    "refers to no hostPath volume of the pod"
                )
                continue
            mounts.append(str(mount.get("mountPath", "")))
        tokens = list(container["command"][1:]) + list(container.get("args") or [])
        for token in tokens:
            for flag, path in _path_candidates(token):
                if not any(_is_under(path, m) for m in mounts if m.startswith("/")):
                    named = f"flag {flag}" if flag else "argument"
                    problems.append(
                        f"container {container['name']}: {named} names {path}, "
                        "which is under none of the container's hostPath volumeMounts"
                    )
    if problems:
        raise AdmissionError("; ".join(problems))


_TYPE_CHECKS = {
    "Directory": (stat.S_ISDIR, "a directory"),
    "File": (stat.S_ISREG, "a regular file"),
    "Socket": (stat.S_ISSOCK, "a socket"),
    "CharDevice": (stat.S_ISCHR, "a character device"),
    "BlockDevice": (stat.S_ISBLK, "a block device"),
}


def _ensure_host_path(volume_name: str, path: str, kind: str) -> None:
    where = f"hostPath volume {volume_name!r} ({path})"
    if not path.startswith("/"):
        raise AdmissionError(f"{where}: path must be absolute")
    try:
        if kind == "DirectoryOrCreate":
            if not os.path.exists(path):
                os.makedirs(path, mode=0o755, exist_ok=True)
                os.chmod(path, 0o755)  # makedirs' mode is filtered by the umask
            elif not os.path.isdir(path):
                raise AdmissionError(f"{where}: exists but is not a directory")
        elif kind == "FileOrCreate":
            if not os.path.exists(path):
                os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
                os.close(fd)
                os.chmod(path, 0o644)
            elif not os.path.isfile(path):
                raise AdmissionError(f"{where}: exists but is not a regular file")
        elif kind in _TYPE_CHECKS:
            check, described = _TYPE_CHECKS[kind]
            try:
                mode = os.stat(path).st_mode
            except FileNotFoundError:
                raise AdmissionError(f"{where}: type {kind} but it does not exist") from None
            if not check(mode):
                raise AdmissionError(f"{where}: type {kind} but it is not {described}")
        elif kind:
            raise AdmissionError(f"{where}: unknown hostPath type {kind!r}")
    except OSError as exc:
        raise AdmissionError(f"{where}: cannot create: {exc.strerror}") from exc


def check_host_paths(pod: dict[str, Any]) -> None:
    for volume in pod["spec"].get("volumes") or []:
        host_path = volume.get("hostPath")
        if not isinstance(host_path, dict):
            continue
        _ensure_host_path(
            volume["name"], str(host_path.get("path", "")), str(host_path.get("type") or "")
        )


def admit(pod: dict[str, Any]) -> None:
    """Raise AdmissionError naming every problem of the first failing check."""
    check_mounts(pod)
    check_host_paths(pod)


def binary_for_image(image: str, bin_dir: str) -> str | None:
    """The program an image stands for, or None (the pod is then ImageUnavailable).

    With an ``images/`` tree in the bin dir (the lab's own builds: lab/kubebin.py), the
    image's full reference must be there: ``registry.k8s.io/etcd:3.6.16-0`` ->
    ``<bin_dir>/images/registry.k8s.io/etcd/3.6.16-0``, so a version or imageRepository
    the node does not have fails like an image pull on a real node. A plain bin dir
    (someone's release binaries, versions unknown) maps by program name only:
    ``<bin_dir>/etcd``.
    """
    reference = image.split("@", 1)[0]
    repo, _, tag = reference.rpartition(":")
    if not repo or "/" in tag:  # no tag (or a registry port, not a tag)
        repo, tag = reference, "latest"
    name = repo.rsplit("/", 1)[-1]
    if not name or ".." in repo.split("/") or tag == "..":
        return None
    images = os.path.join(bin_dir, "images")
    path = os.path.join(images, repo, tag) if os.path.isdir(images) else os.path.join(bin_dir, name)
    if os.path.isfile(path) and os.access(path, os.X_OK):
        return path
    return None
