"""What each control-plane static pod contains, as plain data (kubeadm reference §0, §1, §11).

Everything a manifest says that depends on the inventory or on versions is decided here:
flags (kubeadm's defaults merged with the inventory's extra args, sorted by name as kubeadm
renders them), probes, ports, resources and hostPath volumes. The templates only lay these
values out, so no decision hides in Jinja.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from bootstrap.errors import InputError
from bootstrap.inventory.model import (
    API_PORT,
    CONTROLLER_MANAGER_PORT,
    ETCD_CLIENT_PORT,
    ETCD_DATA_DIR,
    ETCD_METRICS_PORT,
    KUBERNETES_DIR,
    PKI_DIR,
    SCHEDULER_PORT,
    Inventory,
    Master,
    url_host,
)
from bootstrap.inventory.versions import removed_etcd_flag

ETCD = "etcd"
APISERVER = "kube-apiserver"
CONTROLLER_MANAGER = "kube-controller-manager"
SCHEDULER = "kube-scheduler"

# Where the EncryptionConfiguration lives on the hosts. Its directory is the pod's own
# read-only `encryption-config` volume: a directory mount (not a single-file bind mount)
# keeps seeing the file after an atomic rename replaces it.
ENCRYPTION_CONFIG_DIR = f"{KUBERNETES_DIR}/encryption"
ENCRYPTION_CONFIG_PATH = f"{ENCRYPTION_CONFIG_DIR}/config.yaml"

CONTROLLER_MANAGER_CONF = f"{KUBERNETES_DIR}/controller-manager.conf"
SCHEDULER_CONF = f"{KUBERNETES_DIR}/scheduler.conf"
FLEXVOLUME_DIR = "/usr/libexec/kubernetes/kubelet-plugins/volume/exec"

ETCD_ADVERTISE_ANNOTATION = "kubeadm.kubernetes.io/etcd.advertise-client-urls"
APISERVER_ENDPOINT_ANNOTATION = "kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint"

PROBE_PORT_NAME = "probe-port"

# Version switches (reference §0; §11 wins for v1.36). v1.37 renders as v1.36 but for
# the image tags: kubeadm v1.37.2's manifest code is v1.36.3's (docs/v1.37.md).
ETCD_LIVEZ_READYZ_SINCE = (3, 5, 11)  # older etcd serves only /health on the metrics port
# 3.5 knows only the --experimental-* spellings; 3.6 takes both; 3.7 only the new ones.
ETCD_FEATURE_GATES_SINCE = (3, 6, 0)
SCHEDULER_LIVEZ_SINCE = (1, 32)
NAMED_PROBE_PORT_SINCE = (1, 34)
NO_FLEXVOLUME_SINCE = (1, 36)  # k/k #136423

# Probe timings, kubeadm's (reference §1.1): startup allows 24 x 10 s = the default 4 min
# controlPlaneComponentHealthCheck.
STARTUP_FAILURE_THRESHOLD = 24


def scheduler_health_path(kubernetes_minor: tuple[int, int]) -> str:
    """The scheduler's health endpoint: /livez from SCHEDULER_LIVEZ_SINCE, /healthz before
    (what its probes use, so what waits and verify ask too)."""
    return "/livez" if kubernetes_minor >= SCHEDULER_LIVEZ_SINCE else "/healthz"

Flags = tuple[tuple[str, str], ...]  # (name, value) without the leading "--"
Scheme = Literal["HTTP", "HTTPS"]
HostPathType = Literal["DirectoryOrCreate", "FileOrCreate"]


@dataclass(frozen=True)
class Volume:
    """A hostPath volume mounted at the same path inside the container."""

    name: str
    host_path: str
    type: HostPathType
    read_only: bool

    @property
    def mount_path(self) -> str:
        return self.host_path

    def contains(self, path: str) -> bool:
        """True when `path` is this volume's path or lies below it."""
        base = self.host_path.rstrip("/")
        return path == base or path.startswith(base + "/")


@dataclass(frozen=True)
class Probe:
    path: str
    host: str | None  # None: the kubelet probes the pod IP (bind address 0.0.0.0 / ::)
    port: int | str  # a number, or the name of a container port
    scheme: Scheme
    initial_delay_seconds: int | None
    timeout_seconds: int
    period_seconds: int
    failure_threshold: int


@dataclass(frozen=True)
class ContainerPort:
    container_port: int
    name: str
    protocol: str = "TCP"


@dataclass(frozen=True)
class PodFacts:
    """One static pod, everything but the config digest (that needs the mounted files)."""

    component: str
    image: str
    binary: str
    flags: Flags  # sorted by name, extra args merged
    annotations: tuple[tuple[str, str], ...]  # kubeadm's, sorted by key
    ports: tuple[ContainerPort, ...]
    liveness: Probe
    readiness: Probe | None
    startup: Probe
    requests: tuple[tuple[str, str], ...]
    volumes: tuple[Volume, ...]  # sorted by name

    @property
    def command(self) -> tuple[str, ...]:
        return (self.binary, *(f"--{name}={value}" for name, value in self.flags))

    def flag(self, name: str) -> str | None:
        for flag_name, value in self.flags:
            if flag_name == name:
                return value
        return None


@dataclass(frozen=True)
class EtcdCluster:
    """How this master's etcd member joins the cluster."""

    initial_cluster: tuple[tuple[str, str], ...]  # (name, peer_url) in the order to render
    state: Literal["new", "existing"]


# --- helpers ----------------------------------------------------------------------------


def merge_flags(
    defaults: Sequence[tuple[str, str]], extra: Mapping[str, str] | None
) -> Flags:
    """kubeadm's merge: an extra arg replaces the default of the same name; sorted by name."""
    merged = dict(defaults)
    for raw_name, value in (extra or {}).items():
        merged[raw_name.lstrip("-")] = str(value)
    return tuple(sorted(merged.items()))


def _is_ipv6(address: object) -> bool:
    return ":" in str(address)


def _loopback(master: Master) -> str:
    """The loopback address of the advertise address's family."""
    return "::1" if _is_ipv6(master.address) else "127.0.0.1"


def _probe_host(bind_address: str) -> str | None:
    """kubeadm probes the bind address; a wildcard means the pod IP (no host)."""
    try:
        if ipaddress.ip_address(bind_address).is_unspecified:
            return None
    except ValueError:
        pass
    return bind_address


def _probes(
    *,
    host: str | None,
    port: int | str,
    scheme: Scheme,
    liveness: str,
    readiness: str | None,
    startup: str,
) -> tuple[Probe, Probe | None, Probe]:
    live = Probe(liveness, host, port, scheme, 10, 15, 10, 8)
    ready = Probe(readiness, host, port, scheme, None, 15, 1, 3) if readiness else None
    start = Probe(startup, host, port, scheme, 10, 15, 10, STARTUP_FAILURE_THRESHOLD)
    return live, ready, start


def _probe_port(inventory: Inventory, number: int) -> tuple[int | str, tuple[ContainerPort, ...]]:
    """From v1.34 kubeadm names the probe port; before, probes use the number."""
    if inventory.kubernetes_minor >= NAMED_PROBE_PORT_SINCE:
        return PROBE_PORT_NAME, (ContainerPort(number, PROBE_PORT_NAME),)
    return number, ()


def _int_flag(component: str, flags: Flags, name: str, default: int) -> int:
    value = dict(flags).get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise InputError(
            f"{component}: --{name}={value} is not a port number",
            hint=f"fix extraArgs.{component}.{name} in the inventory",
        ) from None


def kubernetes_image(inventory: Inventory, component: str) -> str:
    tag = inventory.kubernetes_version
    if not tag.startswith("v"):
        tag = "v" + tag
    return f"{inventory.image_repository}/{component}:{tag}"


def etcd_image(inventory: Inventory) -> str:
    """etcd images are tagged `<version>-<build>`; kubeadm's builds are `-0`."""
    tag = inventory.etcd_version.lstrip("v")
    if "-" not in tag:
        tag += "-0"
    return f"{inventory.image_repository}/etcd:{tag}"


def ca_cert_volumes(inventory: Inventory) -> tuple[Volume, ...]:
    """The host trust store, read-only, for kube-apiserver and kube-controller-manager.

    kubeadm mounts the directories of its list that exist on the host it runs on. We
    render on the operator's machine, so the inventory names them (``caCertDirs``; the
    default is the Debian/Ubuntu layout). Volume names are kubeadm's: ``ca-certs`` for
    /etc/ssl/certs, the path with dashes otherwise (/etc/pki/ca-trust -> etc-pki-ca-trust).
    DirectoryOrCreate, as kubeadm: a missing directory is created empty, which is harmless.
    """
    return tuple(
        Volume(
            "ca-certs" if path == "/etc/ssl/certs" else path.strip("/").replace("/", "-"),
            path,
            "DirectoryOrCreate",
            True,
        )
        for path in inventory.ca_cert_dirs
    )


def _sorted_volumes(volumes: Sequence[Volume]) -> tuple[Volume, ...]:
    return tuple(sorted(volumes, key=lambda v: v.name))


# --- the four pods ----------------------------------------------------------------------


def etcd_pod(inventory: Inventory, master: Master, cluster: EtcdCluster) -> PodFacts:
    adv = url_host(master.address)
    loopback = url_host(_loopback(master))
    client_url = master.client_url
    pki = f"{PKI_DIR}/etcd"
    defaults: list[tuple[str, str]] = [
        ("advertise-client-urls", client_url),
        ("cert-file", f"{pki}/server.crt"),
        ("client-cert-auth", "true"),
        ("data-dir", ETCD_DATA_DIR),
        ("initial-advertise-peer-urls", master.peer_url),
        ("initial-cluster", ",".join(f"{name}={url}" for name, url in cluster.initial_cluster)),
        ("key-file", f"{pki}/server.key"),
        ("listen-client-urls", f"https://{loopback}:{ETCD_CLIENT_PORT},https://{adv}:{ETCD_CLIENT_PORT}"),
        ("listen-metrics-urls", f"http://{loopback}:{ETCD_METRICS_PORT}"),
        ("listen-peer-urls", master.peer_url),
        ("name", master.name),
        ("peer-cert-file", f"{pki}/peer.crt"),
        ("peer-client-cert-auth", "true"),
        ("peer-key-file", f"{pki}/peer.key"),
        ("peer-trusted-ca-file", f"{pki}/ca.crt"),
        ("snapshot-count", "10000"),
        ("trusted-ca-file", f"{pki}/ca.crt"),
    ]
    if cluster.state == "existing":  # absent for a new cluster: etcd's default is "new"
        defaults.append(("initial-cluster-state", "existing"))
    if inventory.etcd_semver >= ETCD_FEATURE_GATES_SINCE:
        defaults += [
            ("feature-gates", "InitialCorruptCheck=true"),
            ("watch-progress-notify-interval", "5s"),
        ]
    else:
        defaults += [
            ("experimental-initial-corrupt-check", "true"),
            ("experimental-watch-progress-notify-interval", "5s"),
        ]
    flags = merge_flags(defaults, inventory.extra_args.get(ETCD))
    for name, _value in flags:
        # The loader refuses these with field and line; a model built in code gets here.
        removed = removed_etcd_flag(inventory.etcd_semver, name)
        if removed is not None:
            raise InputError(f"etcd: --{name}: {removed}", hint=f"fix extraArgs.etcd.{name}")

    # Like kubeadm, probe the first metrics URL (an extra arg may move it).
    metrics = urlsplit(dict(flags)["listen-metrics-urls"].split(",")[0])
    scheme: Scheme = "HTTPS" if metrics.scheme == "https" else "HTTP"
    port_number = metrics.port or ETCD_METRICS_PORT
    port, ports = _probe_port(inventory, port_number)
    if inventory.etcd_semver >= ETCD_LIVEZ_READYZ_SINCE:
        probes = _probes(
            host=_probe_host(metrics.hostname or ""),
            port=port, scheme=scheme, liveness="/livez", readiness="/readyz", startup="/readyz",
        )
    else:
        # etcd before 3.5.11 has no /livez or /readyz (verified: 3.5.1 answers 404); its
        # /health takes these query parameters (kubeadm v1.25-v1.30 used the same probes).
        probes = _probes(
            host=_probe_host(metrics.hostname or ""),
            port=port, scheme=scheme,
            liveness="/health?exclude=NOSPACE&serializable=true",
            readiness=None,
            startup="/health?serializable=false",
        )
    data_dir = dict(flags)["data-dir"]
    return PodFacts(
        component=ETCD,
        image=etcd_image(inventory),
        binary="etcd",
        flags=flags,
        annotations=((ETCD_ADVERTISE_ANNOTATION, client_url),),
        ports=ports,
        liveness=probes[0],
        readiness=probes[1],
        startup=probes[2],
        requests=(("cpu", "100m"), ("memory", "100Mi")),
        # Both read-write, as kubeadm mounts them.
        volumes=_sorted_volumes([
            Volume("etcd-certs", pki, "DirectoryOrCreate", False),
            Volume("etcd-data", data_dir, "DirectoryOrCreate", False),
        ]),
    )


def apiserver_pod(inventory: Inventory, master: Master) -> PodFacts:
    adv = str(master.address)
    # Every apiserver talks only to its own etcd member, over loopback.
    etcd_server = f"https://{url_host(_loopback(master))}:{ETCD_CLIENT_PORT}"
    defaults: list[tuple[str, str]] = [
        ("advertise-address", adv),
        ("allow-privileged", "true"),
        ("authorization-mode", "Node,RBAC"),
        ("client-ca-file", f"{PKI_DIR}/ca.crt"),
        ("enable-admission-plugins", "NodeRestriction"),
        ("enable-bootstrap-token-auth", "true"),
        ("etcd-cafile", f"{PKI_DIR}/etcd/ca.crt"),
        ("etcd-certfile", f"{PKI_DIR}/apiserver-etcd-client.crt"),
        ("etcd-keyfile", f"{PKI_DIR}/apiserver-etcd-client.key"),
        ("etcd-servers", etcd_server),
        ("kubelet-client-certificate", f"{PKI_DIR}/apiserver-kubelet-client.crt"),
        ("kubelet-client-key", f"{PKI_DIR}/apiserver-kubelet-client.key"),
        ("kubelet-preferred-address-types", "InternalIP,ExternalIP,Hostname"),
        ("proxy-client-cert-file", f"{PKI_DIR}/front-proxy-client.crt"),
        ("proxy-client-key-file", f"{PKI_DIR}/front-proxy-client.key"),
        ("requestheader-allowed-names", "front-proxy-client"),
        ("requestheader-client-ca-file", f"{PKI_DIR}/front-proxy-ca.crt"),
        ("requestheader-extra-headers-prefix", "X-Remote-Extra-"),
        ("requestheader-group-headers", "X-Remote-Group"),
        ("requestheader-username-headers", "X-Remote-User"),
        ("secure-port", str(API_PORT)),
        ("service-account-issuer", f"https://kubernetes.default.svc.{inventory.dns_domain}"),
        ("service-account-key-file", f"{PKI_DIR}/sa.pub"),
        ("service-account-signing-key-file", f"{PKI_DIR}/sa.key"),
        ("service-cluster-ip-range", str(inventory.service_subnet)),
        ("tls-cert-file", f"{PKI_DIR}/apiserver.crt"),
        ("tls-private-key-file", f"{PKI_DIR}/apiserver.key"),
    ]
    extra = dict(inventory.extra_args.get(APISERVER) or {})
    if "authorization-config" in extra:
        # kubeadm drops --authorization-mode when the user supplies a structured config.
        defaults = [(n, v) for n, v in defaults if n != "authorization-mode"]
    volumes = [
        *ca_cert_volumes(inventory),
        Volume("k8s-certs", PKI_DIR, "DirectoryOrCreate", True),
    ]
    if inventory.encryption_at_rest:
        defaults.append(("encryption-provider-config", ENCRYPTION_CONFIG_PATH))
        volumes.append(
            Volume("encryption-config", ENCRYPTION_CONFIG_DIR, "DirectoryOrCreate", True)
        )
    flags = merge_flags(defaults, extra)

    secure_port = _int_flag(APISERVER, flags, "secure-port", API_PORT)
    port, ports = _probe_port(inventory, secure_port)
    live, ready, start = _probes(
        host=_probe_host(adv), port=port, scheme="HTTPS",
        liveness="/livez", readiness="/readyz", startup="/livez",
    )
    endpoint = f"{url_host(adv)}:{secure_port}"
    return PodFacts(
        component=APISERVER,
        image=kubernetes_image(inventory, APISERVER),
        binary=APISERVER,
        flags=flags,
        annotations=((APISERVER_ENDPOINT_ANNOTATION, endpoint),),
        ports=ports,
        liveness=live,
        readiness=ready,
        startup=start,
        requests=(("cpu", "250m"),),
        volumes=_sorted_volumes(volumes),
    )


def controller_manager_pod(inventory: Inventory, master: Master) -> PodFacts:
    defaults: list[tuple[str, str]] = [
        ("authentication-kubeconfig", CONTROLLER_MANAGER_CONF),
        ("authorization-kubeconfig", CONTROLLER_MANAGER_CONF),
        ("bind-address", "127.0.0.1"),
        ("client-ca-file", f"{PKI_DIR}/ca.crt"),
        ("cluster-name", inventory.cluster_name),
        ("cluster-signing-cert-file", f"{PKI_DIR}/ca.crt"),
        ("cluster-signing-key-file", f"{PKI_DIR}/ca.key"),
        ("controllers", "*,bootstrapsigner,tokencleaner"),
        ("kubeconfig", CONTROLLER_MANAGER_CONF),
        ("leader-elect", "true"),
        ("requestheader-client-ca-file", f"{PKI_DIR}/front-proxy-ca.crt"),
        ("root-ca-file", f"{PKI_DIR}/ca.crt"),
        ("service-account-private-key-file", f"{PKI_DIR}/sa.key"),
        ("use-service-account-credentials", "true"),
    ]
    if inventory.pod_subnet is not None:
        defaults += [
            ("allocate-node-cidrs", "true"),
            ("cluster-cidr", str(inventory.pod_subnet)),
            ("service-cluster-ip-range", str(inventory.service_subnet)),
        ]
    flags = merge_flags(defaults, inventory.extra_args.get(CONTROLLER_MANAGER))
    volumes = [
        *ca_cert_volumes(inventory),
        Volume("k8s-certs", PKI_DIR, "DirectoryOrCreate", True),
        Volume("kubeconfig", CONTROLLER_MANAGER_CONF, "FileOrCreate", True),
    ]
    if inventory.kubernetes_minor < NO_FLEXVOLUME_SINCE:
        flex_dir = dict(flags).get("flex-volume-plugin-dir", FLEXVOLUME_DIR)
        volumes.append(Volume("flexvolume-dir", flex_dir, "DirectoryOrCreate", False))

    secure_port = _int_flag(CONTROLLER_MANAGER, flags, "secure-port", CONTROLLER_MANAGER_PORT)
    port, ports = _probe_port(inventory, secure_port)
    live, ready, start = _probes(
        host=_probe_host(dict(flags)["bind-address"]), port=port, scheme="HTTPS",
        liveness="/healthz", readiness=None, startup="/healthz",
    )
    return PodFacts(
        component=CONTROLLER_MANAGER,
        image=kubernetes_image(inventory, CONTROLLER_MANAGER),
        binary=CONTROLLER_MANAGER,
        flags=flags,
        annotations=(),
        ports=ports,
        liveness=live,
        readiness=ready,
        startup=start,
        requests=(("cpu", "200m"),),
        volumes=_sorted_volumes(volumes),
    )


def scheduler_pod(inventory: Inventory, master: Master) -> PodFacts:
    defaults: list[tuple[str, str]] = [
        ("authentication-kubeconfig", SCHEDULER_CONF),
        ("authorization-kubeconfig", SCHEDULER_CONF),
        ("bind-address", "127.0.0.1"),
        ("kubeconfig", SCHEDULER_CONF),
        ("leader-elect", "true"),
    ]
    flags = merge_flags(defaults, inventory.extra_args.get(SCHEDULER))
    secure_port = _int_flag(SCHEDULER, flags, "secure-port", SCHEDULER_PORT)
    port, ports = _probe_port(inventory, secure_port)
    host = _probe_host(dict(flags)["bind-address"])
    if inventory.kubernetes_minor >= SCHEDULER_LIVEZ_SINCE:
        live, ready, start = _probes(
            host=host, port=port, scheme="HTTPS",
            liveness="/livez", readiness="/readyz", startup="/livez",
        )
    else:
        live, ready, start = _probes(
            host=host, port=port, scheme="HTTPS",
            liveness="/healthz", readiness=None, startup="/healthz",
        )
    return PodFacts(
        component=SCHEDULER,
        image=kubernetes_image(inventory, SCHEDULER),
        binary=SCHEDULER,
        flags=flags,
        annotations=(),
        ports=ports,
        liveness=live,
        readiness=ready,
        startup=start,
        requests=(("cpu", "100m"),),
        volumes=(Volume("kubeconfig", SCHEDULER_CONF, "FileOrCreate", True),),
    )


def pod_facts(inventory: Inventory, master: Master, etcd: EtcdCluster) -> tuple[PodFacts, ...]:
    """The four static pods of one master, in COMPONENTS order."""
    return (
        etcd_pod(inventory, master, etcd),
        apiserver_pod(inventory, master),
        controller_manager_pod(inventory, master),
        scheduler_pod(inventory, master),
    )


def flag_paths(value: str) -> list[str]:
    """Absolute file paths in a flag value (comma-separated lists included; URLs are not paths)."""
    return [part for part in value.split(",") if part.startswith("/") and not part.startswith("//")]
