"""The lab's real binaries, built from their Go modules and cached outside the checkout.

No registry this machine reaches ships kube-apiserver & co., but the Go module proxy serves
``k8s.io/kubernetes`` and ``go.etcd.io/etcd/*``. Each pinned version has a small module
of ours under ``lab/kubebin/<name>-<version>/`` (go.mod + go.sum committed, so a build is
reproducible); ``python -m lab bins`` builds the programs with ``CGO_ENABLED=0 -trimpath``
and Kubernetes' version ldflags (so ``--version`` prints the real version) into

    $BOOTSTRAP_LAB_CACHE (default ~/.cache/bootstrap-lab)/build/<name>-<version>-<go.sum hash>/

and composes the lab's bin dir ``.../bin/kubernetes-<v>_etcd-<v>/`` from links to them.
The cache key includes go.sum's hash: a changed pin never reuses a stale build. Go's own
module and build caches (GOMODCACHE, GOCACHE) are shared with every other Go build here,
so a second clone or CI run relinks in seconds.

A version with no module dir yet gets one generated (``go mod tidy`` against the proxy);
commit it to pin it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab.config import PAUSE_IMAGE, REPO, LabError

MODULES = REPO / "lab" / "kubebin"
DEFAULT_KUBERNETES = "v1.37.2"  # the newest patch of the current minor the module proxy serves
DEFAULT_ETCD = "v3.7.0"  # what kubeadm v1.37 deploys with it (docs/v1.37.md)
# The previous minor, kubeadm's newest etcd 3.6 patch served: what the upgrade test starts
# from (tests/test_upgrade_lab.py), so `make bins` builds it too.
PREVIOUS_KUBERNETES = "v1.36.3"
PREVIOUS_ETCD = "v3.6.16"
KUBE_PROGRAMS = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
)
# Built for the lab's own version only, when its nodes run the real kubelet
# (`lab up --node kubelet`); a module dir generated before it was added may not pin it.
KUBE_NODE_PROGRAMS = ("kubelet",)
ETCD_PROGRAMS = {  # binary name -> package
    "etcd": "go.etcd.io/etcd/server/v3",
    "etcdctl": "go.etcd.io/etcd/etcdctl/v3",
    "etcdutl": "go.etcd.io/etcd/etcdutl/v3",
}
COMPLETE = ".complete"  # written last: a build cut off half-way is never reused
# The node's container runtime and tools (`lab up --node kubelet`), each pinned in its own
# module dir like Kubernetes and etcd: name -> (upstream module, {binary: package}).
DEFAULT_CONTAINERD = "v2.3.7"  # 2.3 is containerd's long-term line; Kubernetes 1.36 needs 2.2+
DEFAULT_CRI_TOOLS = "v1.37.0"
DEFAULT_RUNC = "v1.4.4"
# The lab's own pause program (lab/kubebin/pause-v1/main.go, stdlib only): its revision,
# not an upstream version. The image it becomes is tagged config.PAUSE_IMAGE.
PAUSE_REVISION = "v1"
_CONTAINERD = "github.com/containerd/containerd/v2"
NODE_MODULES: dict[str, tuple[str, dict[str, str]]] = {
    "containerd": (
        _CONTAINERD,
        {p: f"{_CONTAINERD}/cmd/{p}" for p in ("containerd", "containerd-shim-runc-v2", "ctr")},
    ),
    "cri-tools": ("sigs.k8s.io/cri-tools", {"crictl": "sigs.k8s.io/cri-tools/cmd/crictl"}),
    # runc's nsenter is C: built with cgo, and with libseccomp (Debian's libseccomp-dev)
    # because kubeadm's manifests ask for the RuntimeDefault seccomp profile.
    "runc": ("github.com/opencontainers/runc", {"runc": "github.com/opencontainers/runc"}),
    "pause": ("", {"pause": "bootstrap.lab/pause"}),
}
GO_FALLBACK = Path("/usr/local/go/bin/go")
VERSION_RE = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")

Log = Callable[[str], None]


def cache_root() -> Path:
    configured = os.environ.get("BOOTSTRAP_LAB_CACHE")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bootstrap-lab"


def _check_version(kind: str, version: str) -> tuple[int, int, int]:
    match = VERSION_RE.match(version)
    if not match:
        raise LabError(f"--{kind} {version!r}: expected vX.Y.Z", exit_code=2)
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


@dataclass(frozen=True)
class Module:
    """One pinned Go module of ours and the programs it builds."""

    name: str  # "kubernetes" | "etcd" | a key of NODE_MODULES
    version: str
    node: bool = False  # kubernetes: also the node programs (the kubelet)

    @property
    def directory(self) -> Path:
        return MODULES / f"{self.name}-{self.version}"

    @property
    def programs(self) -> dict[str, str]:
        if self.name == "kubernetes":
            names = KUBE_PROGRAMS + (KUBE_NODE_PROGRAMS if self.node else ())
            return {p: f"k8s.io/kubernetes/cmd/{p}" for p in names}
        if self.name in NODE_MODULES:
            return dict(NODE_MODULES[self.name][1])
        return dict(ETCD_PROGRAMS)

    @property
    def cgo(self) -> bool:
        return self.name == "runc"

    @property
    def tags(self) -> str:
        # runc reads its version from an embedded VERSION file, no ldflags needed.
        return "seccomp urfave_cli_no_docs" if self.name == "runc" else ""

    def ldflags(self) -> str:
        flags = ["-s", "-w"]
        if self.name == "kubernetes":
            major, minor, _ = _check_version("kubernetes", self.version)
            pkg = "k8s.io/component-base/version"
            # Fixed build date and tree state: the same pin gives the same bytes.
            flags += [
                f"-X {pkg}.gitVersion={self.version}",
                f"-X {pkg}.gitMajor={major}",
                f"-X {pkg}.gitMinor={minor}",
                f"-X {pkg}.gitTreeState=clean",
                f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
            ]
        elif self.name == "containerd":
            flags += [f"-X github.com/containerd/containerd/v2/version.Version={self.version}"]
        elif self.name == "cri-tools":
            flags += [f"-X sigs.k8s.io/cri-tools/pkg/version.Version={self.version}"]
        return " ".join(flags)

    def key(self) -> str:
        # go.sum pins everything; a module without dependencies (pause) has none, and its
        # own sources are what changes.
        pinned = sorted(self.directory.glob("go.sum")) or sorted(self.directory.glob("*.go"))
        digest = hashlib.sha256(b"".join(p.read_bytes() for p in pinned)).hexdigest()[:12]
        return f"{self.name}-{self.version}-{digest}"


def go_binary() -> str:
    found = shutil.which("go")
    if found:
        return found
    if GO_FALLBACK.is_file():
        return str(GO_FALLBACK)
    raise LabError(
        "the Go toolchain is not installed (the lab builds Kubernetes and etcd from Go modules)",
        hint="install Go 1.26+ so that `go` is on PATH, or pass --bin-dir DIR with "
        "etcd, kube-apiserver, kube-controller-manager and kube-scheduler",
        exit_code=2,
    )


def _go_env(cgo: bool = False) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k in ("PATH", "HOME", "GOPROXY", "GOMODCACHE", "GOCACHE", "GOPATH", "GOTOOLCHAIN",
                 "GOFLAGS", "GONOSUMDB", "GOPRIVATE", "GONOSUMCHECK", "GOSUMDB", "TMPDIR")
    }
    env.setdefault("HOME", str(Path.home()))
    env["PATH"] = os.pathsep.join([str(Path(go_binary()).parent), env.get("PATH", "/usr/bin:/bin")])
    env["CGO_ENABLED"] = "1" if cgo else "0"
    return env


def _run_go(args: list[str], cwd: Path, what: str, cgo: bool = False) -> None:
    proc = subprocess.run(
        [go_binary(), *args], cwd=cwd, env=_go_env(cgo), capture_output=True, text=True,
        check=False,
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise LabError(
            f"{what} failed (exit {proc.returncode}):\n{tail}",
            hint="the Go module proxy must be reachable for a first build; a module it does "
            "not serve shows up above as 'not found' / '410 Gone'",
        )


def _generate_kubernetes(module: Module) -> None:
    """go.mod for k8s.io/kubernetes vX: its own go.mod replaces every staging module with
    a path inside its repo, which a dependent module cannot use; we pin each to v0.Y.Z."""
    major, minor, patch = _check_version("kubernetes", module.version)
    del major
    directory = module.directory
    directory.mkdir(parents=True)
    (directory / "go.mod").write_text(
        "module bootstrap.lab/kubebin\n\ngo 1.26.0\n\n"
        f"require k8s.io/kubernetes {module.version}\n"
    )
    _run_go(["mod", "download", "-json", f"k8s.io/kubernetes@{module.version}"], directory,
            f"fetching k8s.io/kubernetes {module.version}")
    upstream = _download_gomod("k8s.io/kubernetes", module.version, directory)
    staging = re.findall(r"^\s*(k8s\.io/\S+)\s*=>\s*\./staging/", upstream, re.M)
    go_line = re.search(r"^go (\S+)", upstream, re.M)
    replaces = "".join(f"\t{m} => {m} v0.{minor}.{patch}\n" for m in staging)
    # The kubelet is pinned too, whether or not this build wants it (kubelet-mode labs).
    every = Module(module.name, module.version, node=True).programs.values()
    imports = "".join(f'\t_ "{p}"\n' for p in every)
    (directory / "go.mod").write_text(
        f"// Builds the lab's Kubernetes programs from k8s.io/kubernetes {module.version}.\n"
        "// Generated by lab/kubebin.py; staging modules pinned to their matching v0 tags.\n"
        "module bootstrap.lab/kubebin\n\n"
        f"go {go_line.group(1) if go_line else '1.26.0'}\n\n"
        f"require k8s.io/kubernetes {module.version}\n\nreplace (\n{replaces})\n"
    )
    (directory / "tools.go").write_text(
        "//go:build tools\n\n// Package kubebin only pins the programs the lab builds.\n"
        f"package kubebin\n\nimport (\n{imports})\n"
    )
    _run_go(["mod", "tidy"], directory, f"resolving k8s.io/kubernetes {module.version}")


def _download_gomod(path: str, version: str, cwd: Path) -> str:
    proc = subprocess.run(
        [go_binary(), "mod", "download", "-json", f"{path}@{version}"], cwd=cwd,
        env=_go_env(), capture_output=True, text=True, check=False,
    )
    match = re.search(r'"GoMod":\s*"([^"]+)"', proc.stdout)
    if proc.returncode != 0 or not match:
        raise LabError(f"the Go module proxy did not serve {path}@{version}: {proc.stderr[-500:]}")
    return Path(match.group(1)).read_text()


def _generate_etcd(module: Module) -> None:
    _check_version("etcd", module.version)
    directory = module.directory
    directory.mkdir(parents=True)
    requires = "".join(f"\t{p} {module.version}\n" for p in module.programs.values())
    imports = "".join(f'\t_ "{p}"\n' for p in module.programs.values())
    (directory / "go.mod").write_text(
        f"// Builds the lab's etcd, etcdctl and etcdutl from go.etcd.io/etcd {module.version}.\n"
        "// Generated by lab/kubebin.py.\n"
        f"module bootstrap.lab/etcdbin\n\ngo 1.26.0\n\nrequire (\n{requires})\n"
    )
    (directory / "tools.go").write_text(
        "//go:build tools\n\n// Package etcdbin only pins the programs the lab builds.\n"
        f"package etcdbin\n\nimport (\n{imports})\n"
    )
    _run_go(["mod", "tidy"], directory, f"resolving go.etcd.io/etcd {module.version}")


def _generate_node(module: Module) -> None:
    """containerd, cri-tools, runc: one upstream module, its programs pinned in tools.go."""
    _check_version(module.name, module.version)
    upstream, programs = NODE_MODULES[module.name]
    directory = module.directory
    directory.mkdir(parents=True)
    imports = "".join(f'\t_ "{p}"\n' for p in sorted(set(programs.values())))
    (directory / "go.mod").write_text(
        f"// Builds the lab's {', '.join(programs)} from {upstream} {module.version}.\n"
        "// Generated by lab/kubebin.py.\n"
        f"module bootstrap.lab/{module.name}bin\n\ngo 1.26.0\n\n"
        f"require {upstream} {module.version}\n"
    )
    (directory / "tools.go").write_text(
        "//go:build tools\n\n// Package bin only pins the programs the lab builds.\n"
        f"package bin\n\nimport (\n{imports})\n"
    )
    _run_go(["mod", "tidy"], directory, f"resolving {upstream} {module.version}")


def ensure_module(module: Module, log: Log) -> None:
    if module.name == "pause":
        if not (module.directory / "main.go").is_file():
            raise LabError(f"{module.directory} is missing: the lab's pause program is committed")
        return
    if (module.directory / "go.sum").is_file():
        _pin_missing_programs(module, log)
        return
    log(f"{module.directory.relative_to(REPO)}: no pinned module yet; generating it "
        "(commit it to pin this version)")
    try:
        if module.name == "kubernetes":
            _generate_kubernetes(module)
        elif module.name in NODE_MODULES:
            _generate_node(module)
        else:
            _generate_etcd(module)
    except BaseException:
        shutil.rmtree(module.directory, ignore_errors=True)
        raise


def _pin_missing_programs(module: Module, log: Log) -> None:
    """A module dir made before a program was added (the kubelet): pin it too (tools.go
    import + ``go mod tidy``; its go.sum changes, so does the cache key)."""
    tools = module.directory / "tools.go"
    if not tools.is_file():
        return
    text = tools.read_text()
    missing = [p for p in module.programs.values() if f'_ "{p}"' not in text]
    if not missing:
        return
    log(f"{module.directory.relative_to(REPO)}: pinning {', '.join(missing)} too "
        "(commit the changed go.mod/go.sum/tools.go)")
    added = "".join(f'\t_ "{p}"\n' for p in missing)
    head, sep, tail = text.rpartition(")")
    tools.write_text(head + added + sep + tail)
    _run_go(["mod", "tidy"], module.directory, f"resolving {', '.join(missing)}")


def build_module(module: Module, log: Log) -> Path:
    """The cached build dir of ``module``, built first if missing or incomplete."""
    ensure_module(module, log)
    out = cache_root() / "build" / module.key()
    # A program added to a module later (the kubelet) is built into the same cache dir:
    # each binary is renamed into place whole, so one present is complete.
    missing = [p for p in module.programs if not (out / p).is_file()]
    if (out / COMPLETE).is_file() and not missing:
        return out
    out.mkdir(parents=True, exist_ok=True)
    log(
        f"building {', '.join(missing)} ({module.name} {module.version}) from its Go module "
        f"into {out} (a cold build takes minutes on 2 cores; later runs reuse it)"
    )
    for program in missing:
        package = module.programs[program]
        started = time.monotonic()
        tmp = out / f".{program}.{os.getpid()}.tmp"  # two labs may build at once
        args = ["build", "-trimpath", "-ldflags", module.ldflags(), "-o", str(tmp)]
        if module.tags:
            args += ["-tags", module.tags]
        _run_go(
            [*args, package], module.directory,
            f"go build {package} ({module.name} {module.version})", cgo=module.cgo,
        )
        tmp.rename(out / program)
        log(f"  {program:24} {time.monotonic() - started:6.1f} s")
    (out / COMPLETE).write_text(f"{module.name} {module.version}\n")
    return out


def image_refs(module: Module, program: str) -> list[str]:
    """The image names (under registry.k8s.io) a rendered manifest uses for ``program``."""
    if module.name == "kubernetes" and program in KUBE_IMAGES:
        return [f"registry.k8s.io/{program}:{module.version}"]
    if module.name == "etcd" and program == "etcd":
        return [f"registry.k8s.io/etcd:{module.version.lstrip('v')}-0"]
    if module.name == "pause":
        return [PAUSE_IMAGE]
    return []


KUBE_IMAGES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")


def ensure_bins(
    kubernetes: str = DEFAULT_KUBERNETES,
    etcd: str = DEFAULT_ETCD,
    log: Log = print,
    extra_kubernetes: tuple[str, ...] = (),
    extra_etcd: tuple[str, ...] = (),
    node: bool = False,
) -> Path:
    """The lab's bin dir, built where missing: etcd, etcdctl, etcdutl and the Kubernetes
    programs of the given versions (links into the build cache), plus ``images/``, the
    node's "image store": one entry per image reference of every version given, so a
    manifest naming another version or repository is ImageUnavailable, as on a real node
    (lab/runner/admission.py). ``extra_*``: further versions a test moves to (upgrades).

    ``node``: also the real node's programs under ``node/`` (kubelet of ``kubernetes``,
    containerd, its shim, ctr, crictl, runc) and the pause image in ``images/``."""
    wanted = [Module("kubernetes", kubernetes, node=node), Module("etcd", etcd)]
    wanted += [Module("kubernetes", v) for v in extra_kubernetes if v != kubernetes]
    wanted += [Module("etcd", v) for v in extra_etcd if v != etcd]
    node_modules = [
        Module("containerd", DEFAULT_CONTAINERD),
        Module("cri-tools", DEFAULT_CRI_TOOLS),
        Module("runc", DEFAULT_RUNC),
        Module("pause", PAUSE_REVISION),
    ] if node else []
    for module in wanted + node_modules:
        if module.name != "pause":
            _check_version(module.name, module.version)
    builds = [(module, build_module(module, log)) for module in wanted]
    name = "_".join(f"{m.name}-{m.version}" for m in wanted)
    combined = cache_root() / "bin" / name
    for index, (module, build) in enumerate(builds):
        for program in module.programs:
            if program in KUBE_NODE_PROGRAMS:
                _link(combined / "node" / program, build / program)
            elif index < 2:  # the default versions: plain names (etcdctl, kubectl, ...)
                _link(combined / program, build / program)
            for ref in image_refs(module, program):
                repo, tag = ref.rsplit(":", 1)
                _link(combined / "images" / repo / tag, build / program)
    for module in node_modules:
        build = build_module(module, log)
        for program in module.programs:
            if module.name != "pause":
                _link(combined / "node" / program, build / program)
            for ref in image_refs(module, program):
                repo, tag = ref.rsplit(":", 1)
                _link(combined / "images" / repo / tag, build / program)
    return combined


def _link(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() and link.resolve() == target.resolve():
        return
    tmp = link.parent / f".{link.name}.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    tmp.replace(link)
