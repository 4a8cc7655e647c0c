"""Inventory YAML -> frozen ``Inventory``, reporting every problem at once.

Reading is one pass over the composed YAML nodes. Each value is checked where it is
read (``Section`` getters and ``formats`` parsers); cross-field checks (duplicates,
overlapping subnets, IP families, counts) run once all single values are known. Any
error ends in one ``InventoryError`` listing them all, each with field path and line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar, cast

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..errors import InventoryError, echo, shorten
from . import flags as managed_flags
from . import formats
from .fields import (
    CERTIFICATES_KEYS,
    CERTS_CHECK_WARN_DAYS,
    DEFAULT_CA_VALIDITY,
    DEFAULT_CERT_VALIDITY,
    DEFAULT_CLUSTER_NAME,
    DEFAULT_DNS_DOMAIN,
    DEFAULT_IMAGE_REPOSITORY,
    DEFAULT_KEY_ALGORITHM,
    DEFAULT_KNOWN_HOSTS,
    DEFAULT_SERVICE_SUBNET,
    HOST_KEY_POLICIES,
    JUMP_HOST_KEYS,
    LARGEST_SENSIBLE_ETCD,
    MASTER_KEYS,
    MAX_CA_VALIDITY_SECONDS,
    MAX_CERT_VALIDITY_SECONDS,
    MAX_CONNECT_TIMEOUT_SECONDS,
    MAX_EXTRA_ARGS,
    MAX_EXTRA_SANS,
    MAX_FLAG_VALUE,
    MAX_INVENTORY_BYTES,
    MAX_MASTERS,
    MAX_TIMEOUT_SECONDS,
    MIN_SERVICE_ADDRESSES,
    MIN_SERVICE_PREFIX,
    MIN_VALIDITY_SECONDS,
    NETWORKING_KEYS,
    SSH_KEYS,
    TIMEOUTS_KEYS,
    TOP_KEYS,
)
from .model import (
    API_PORT,
    COMPONENTS,
    DEFAULT_CA_CERT_DIRS,
    KEY_ALGORITHMS,
    Inventory,
    IPAddress,
    JumpHost,
    KeyAlgorithm,
    Master,
    SSHSettings,
    Timeouts,
)
from .report import TAG_BOOL, Report, Section, describe, scalar_text
from .versions import (
    DEFAULT_ETCD_FOR_MINOR,
    SUPPORTED_ETCD_MINORS,
    SUPPORTED_KUBERNETES_MINORS,
    etcd_too_new_for,
    minor_text,
    removed_etcd_flag,
    unsupported_kubernetes,
)
from .yamltext import HINT, compose, decode

T = TypeVar("T")

# camelCase key -> Timeouts field
_TIMEOUT_FIELDS = {
    "etcdQuorum": "etcd_quorum",
    "apiserverReady": "apiserver_ready",
    "componentReady": "component_ready",
    "etcdPromote": "etcd_promote",
    "pollInterval": "poll_interval",
}


def load(path: Path) -> Inventory:
    """Read and validate the inventory file at ``path`` (at most MAX_INVENTORY_BYTES)."""
    try:
        # A bounded read: /dev/zero, a FIFO or a 50 MB file must not be read whole.
        with path.open("rb") as handle:
            data = handle.read(MAX_INVENTORY_BYTES + 1)
    except IsADirectoryError:
        raise InventoryError(
            f"cannot read inventory {path}: it is a directory", hint="give the YAML file itself"
        ) from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InventoryError(
            f"cannot read inventory {path}: {cause}", hint="check the inventory file's path"
        ) from None
    if len(data) > MAX_INVENTORY_BYTES:
        raise InventoryError(
            f"{path} is larger than {MAX_INVENTORY_BYTES // 1024} KiB: too large to be an "
            "inventory (seven masters take about 2 KiB)",
            hint="check that the path names the inventory YAML file",
        )
    return load_text(decode(data, path), source=path)


def load_text(text: str, source: Path | None = None) -> Inventory:
    """Validate inventory YAML text. Relative paths resolve against ``source``'s directory."""
    name = str(source) if source is not None else "inventory"
    root = compose(text, source)
    report = Report()
    if root is None:
        report.error("", None, "the inventory is empty (expected a mapping of settings)")
    elif not isinstance(root, MappingNode):
        report.error("", root, f"expected a mapping of settings, got {describe(root)}")
    base_dir = source.absolute().parent if source is not None else None
    inventory = None
    if isinstance(root, MappingNode):
        inventory = _Loader(report, base_dir).read(Section(report, "", root, TOP_KEYS), source)
    if report.errors or inventory is None:
        count = len(report.errors)
        raise InventoryError(
            f"{name} is not a valid inventory ({count} problem{'s' if count != 1 else ''})",
            report.errors,
            hint=HINT,
        )
    return inventory


@dataclass(frozen=True)
class _Draft:
    """A master as read, before cross-checks; ``None`` marks a value already reported."""

    path: str
    node: Node
    name: str | None
    name_node: Node | None
    address: IPAddress | None
    address_node: Node | None
    ssh_host: str | None
    ssh: SSHSettings


class _Loader:
    def __init__(self, report: Report, base_dir: Path | None) -> None:
        self.report = report
        self.base_dir = base_dir

    # --- the whole file ----------------------------------------------------------------

    def read(self, top: Section, source: Path | None) -> Inventory | None:
        cluster_name = self.label(top, "clusterName", DEFAULT_CLUSTER_NAME)
        kubernetes = self.kubernetes_version(top)
        etcd_version = self.etcd_version(top, kubernetes)

        networking = top.section("networking", NETWORKING_KEYS)
        service_subnet = self.service_subnet(networking)
        pod_subnet = networking.parsed("podSubnet", formats.parse_network)
        dns_domain = self.dns_domain(networking)
        image_repository = _default(
            top,
            "imageRepository",
            top.parsed("imageRepository", formats.check_image_repository),
            DEFAULT_IMAGE_REPOSITORY,
        )

        certs = top.section("certificates", CERTIFICATES_KEYS)
        key_algorithm = _default(
            certs,
            "keyAlgorithm",
            certs.choice("keyAlgorithm", KEY_ALGORITHMS),
            DEFAULT_KEY_ALGORITHM,
        )
        ca_validity = self.validity(
            certs, "caValidity", DEFAULT_CA_VALIDITY, MAX_CA_VALIDITY_SECONDS
        )
        cert_validity = self.validity(
            certs, "certValidity", DEFAULT_CERT_VALIDITY, MAX_CERT_VALIDITY_SECONDS
        )
        if ca_validity and cert_validity and cert_validity > ca_validity:
            self.report.warn(
                certs.child("certValidity"),
                certs.value_node("certValidity"),
                "longer than caValidity: certificates would outlive the CA that signs them",
            )
        apiserver_sans = self.sans(certs, "apiServerExtraSANs")
        etcd_sans = self.sans(certs, "etcdExtraSANs")
        encryption = _default(top, "encryptionAtRest", top.boolean("encryptionAtRest"), True)
        ca_cert_dirs = self.ca_cert_dirs(top)
        extra_args = self.extra_args(
            top.section("extraArgs", COMPONENTS, what="component"),
            formats.parse_etcd_version(etcd_version) if etcd_version else None,
        )
        timeouts = self.timeouts(top.section("timeouts", TIMEOUTS_KEYS))

        ssh_defaults = self.ssh_layer(top.section("ssh", SSH_KEYS))
        drafts = self.masters(top, ssh_defaults)
        endpoint = self.endpoint(top, drafts)

        self.check_masters(top, drafts)
        self.check_subnets(networking, service_subnet, pod_subnet, drafts, top, endpoint)

        if self.report.errors:
            return None
        # No errors: every value above was read (or defaulted) successfully.
        assert kubernetes is not None and etcd_version is not None and endpoint is not None
        assert service_subnet is not None and cluster_name is not None
        assert dns_domain is not None and image_repository is not None
        assert key_algorithm is not None and ca_validity is not None
        assert cert_validity is not None and encryption is not None
        return Inventory(
            cluster_name=cluster_name,
            kubernetes_version=kubernetes[0],
            etcd_version=etcd_version,
            control_plane_host=endpoint[0],
            control_plane_port=endpoint[1],
            service_subnet=service_subnet,
            pod_subnet=pod_subnet,
            dns_domain=dns_domain,
            image_repository=image_repository,
            key_algorithm=_key_algorithm(key_algorithm),
            ca_validity_seconds=ca_validity,
            cert_validity_seconds=cert_validity,
            apiserver_extra_sans=apiserver_sans,
            etcd_extra_sans=etcd_sans,
            encryption_at_rest=encryption,
            masters=tuple(_master(d) for d in drafts),
            ca_cert_dirs=ca_cert_dirs,
            extra_args=extra_args,
            timeouts=timeouts,
            source=source,
            warnings=tuple(self.report.warnings),
        )

    # --- single values -----------------------------------------------------------------

    def label(self, sec: Section, key: str, default: str | None = None) -> str | None:
        text = sec.string(key, required=default is None)
        node = sec.value_node(key)
        if text is None or node is None:
            return default if sec.given(key) is None else None
        if not formats.is_dns1123_label(text):
            self.report.error(
                sec.child(key),
                node,
                f"{echo(text)} is not a DNS-1123 label (lower-case letters, digits and '-', "
                "starting and ending with a letter or digit, at most 63 characters)",
            )
            return None
        return text

    def kubernetes_version(self, top: Section) -> tuple[str, tuple[int, int, int]] | None:
        text = top.string("kubernetesVersion", required=True)
        node = top.value_node("kubernetesVersion")
        if text is None or node is None:
            return None
        version = self.report.check(
            "kubernetesVersion", node, formats.parse_kubernetes_version, text
        )
        if version is None:
            return None
        if version[:2] not in SUPPORTED_KUBERNETES_MINORS:
            self.report.error(
                "kubernetesVersion",
                node,
                f"unsupported version {echo(text)}: {unsupported_kubernetes(version[:2])}",
            )
            return None
        return "v" + text.removeprefix("v"), version

    def etcd_version(
        self, top: Section, kubernetes: tuple[str, tuple[int, int, int]] | None
    ) -> str | None:
        wanted = DEFAULT_ETCD_FOR_MINOR.get(kubernetes[1][:2]) if kubernetes else None
        text = top.string("etcdVersion")
        node = top.value_node("etcdVersion")
        if text is None or node is None:
            return wanted if top.given("etcdVersion") is None else None
        version = self.report.check("etcdVersion", node, formats.parse_etcd_version, text)
        if version is None:
            return None
        if version[:2] not in SUPPORTED_ETCD_MINORS:
            first, last = SUPPORTED_ETCD_MINORS[0], SUPPORTED_ETCD_MINORS[-1]
            self.report.error(
                "etcdVersion",
                node,
                f"unsupported version {echo(text)}: supported are {minor_text(first)}.x "
                f"to {minor_text(last)}.x",
            )
            return None
        too_new = etcd_too_new_for(version, kubernetes[1][:2]) if kubernetes else None
        if too_new is not None:
            self.report.error("etcdVersion", node, too_new)
            return None
        if kubernetes and wanted and formats.parse_etcd_version(wanted) != version:
            self.report.warn(
                "etcdVersion",
                node,
                f"etcd {text} differs from {wanted}, the version kubeadm deploys with "
                f"Kubernetes v{minor_text(kubernetes[1][:2])}",
            )
        return text.removeprefix("v")

    def service_subnet(self, networking: Section) -> formats.IPNetwork | None:
        subnet = _default(
            networking,
            "serviceSubnet",
            networking.parsed("serviceSubnet", formats.parse_network),
            formats.parse_network(DEFAULT_SERVICE_SUBNET),
        )
        node = networking.value_node("serviceSubnet")
        if subnet is None or node is None:
            return subnet
        if subnet.prefixlen < MIN_SERVICE_PREFIX[subnet.version]:
            self.report.error(
                networking.child("serviceSubnet"),
                node,
                f"{subnet} is too large for kube-apiserver: the prefix must be at least "
                f"/{MIN_SERVICE_PREFIX[subnet.version]}",
            )
        elif subnet.num_addresses < MIN_SERVICE_ADDRESSES:
            self.report.error(
                networking.child("serviceSubnet"),
                node,
                f"{subnet} is too small: cluster DNS takes the 10th address; "
                f"use at least {MIN_SERVICE_ADDRESSES} addresses",
            )
        return subnet

    def dns_domain(self, networking: Section) -> str | None:
        text = networking.string("dnsDomain")
        node = networking.value_node("dnsDomain")
        if text is None or node is None:
            return DEFAULT_DNS_DOMAIN if networking.given("dnsDomain") is None else None
        if not formats.is_dns1123_subdomain(text):
            self.report.error(
                networking.child("dnsDomain"), node, f"{echo(text)} is not a lower-case DNS name"
            )
            return None
        return text

    def duration(self, sec: Section, key: str, default: str) -> int | None:
        return _default(
            sec, key, sec.parsed(key, formats.parse_duration), formats.parse_duration(default)
        )

    def validity(self, sec: Section, key: str, default: str, longest: int) -> int | None:
        """A certificate lifetime: at least an hour, at most ``longest`` (see fields.py)."""
        seconds = self.duration(sec, key, default)
        node = sec.value_node(key)
        if seconds is None or node is None or sec.given(key) is None:
            return seconds
        text = str(getattr(node, "value", ""))
        if seconds < MIN_VALIDITY_SECONDS:
            self.report.error(
                sec.child(key),
                node,
                f"{echo(text)} is shorter than 1h: certificates must outlive the run that "
                "issues them and leave time to renew them",
            )
            return None
        if seconds > longest:
            self.report.error(
                sec.child(key),
                node,
                f"{echo(text)} is longer than {longest // (365 * 86400)} years",
            )
            return None
        if key == "certValidity" and seconds < CERTS_CHECK_WARN_DAYS * 86400:
            self.report.warn(
                sec.child(key),
                node,
                f"{echo(text)} is inside `certs check`'s default warning window of "
                f"{CERTS_CHECK_WARN_DAYS} days: it reports every certificate as expiring "
                "(pass --warn-days)",
            )
        return seconds

    def sans(self, sec: Section, key: str) -> tuple[str, ...]:
        sans: list[str] = []
        for index, node in enumerate(sec.items(key)):
            path = f"{sec.child(key)}[{index}]"
            text = scalar_text(self.report, path, node)
            if text is None:
                continue
            san = self.report.check(path, node, formats.check_san, text)
            if san is not None and san not in sans:
                sans.append(san)
        if len(sans) > MAX_EXTRA_SANS:
            self.report.error(
                sec.child(key),
                sec.value_node(key),
                f"{len(sans)} names: at most {MAX_EXTRA_SANS} (each is in every certificate "
                "of its kind)",
            )
        return tuple(sans)

    def ca_cert_dirs(self, top: Section) -> tuple[str, ...]:
        given = top.given("caCertDirs")
        if given is None:
            return DEFAULT_CA_CERT_DIRS
        dirs: list[str] = []
        for index, node in enumerate(top.items("caCertDirs")):
            path = f"{top.child('caCertDirs')}[{index}]"
            text = scalar_text(self.report, path, node)
            if text is None:
                continue
            directory = self.report.check(path, node, formats.check_host_dir, text)
            if directory is None:
                continue
            if directory in dirs:
                self.report.error(path, node, f"{shorten(directory)} is listed twice")
                continue
            dirs.append(directory)
        if isinstance(given, SequenceNode) and not given.value:
            self.report.warn(
                top.child("caCertDirs"),
                given,
                "empty: kube-apiserver and kube-controller-manager get no system CA roots "
                "(TLS to outside services, such as an OIDC issuer, will fail)",
            )
        return tuple(dirs)

    def port(self, sec: Section, key: str) -> int | None:
        value = sec.integer(key)
        node = sec.value_node(key)
        if value is None or node is None:
            return None
        if not 1 <= value <= 65535:
            self.report.error(
                sec.child(key), node, f"{shorten(str(value))} is not a port (1-65535)"
            )
            return None
        return value

    def seconds(self, sec: Section, key: str, limit: float) -> float | None:
        value = sec.number(key)
        node = sec.value_node(key)
        if value is None or node is None:
            return None
        if not 0 < value <= limit:
            self.report.error(
                sec.child(key), node, f"{value:g} seconds: must be above 0 and at most {limit:g}"
            )
            return None
        return value

    def path(self, sec: Section, key: str) -> Path | None:
        text = sec.string(key)
        node = sec.value_node(key)
        if text is None or node is None:
            return None
        if not text or "\0" in text:
            self.report.error(sec.child(key), node, "not a usable file path")
            return None
        # os.path.expanduser leaves the text alone when no home directory is known.
        path = Path(os.path.expanduser(text))
        if not path.is_absolute() and self.base_dir is not None:
            path = self.base_dir / path
        return path

    # --- sections ----------------------------------------------------------------------

    def extra_args(
        self, sec: Section, etcd: tuple[int, int, int] | None
    ) -> dict[str, dict[str, str]]:
        """``etcd``: the etcd version, to refuse flags it no longer has (None: unknown)."""
        result: dict[str, dict[str, str]] = {}
        for component in sec.pairs:
            flags = sec.section(component, None)
            values: dict[str, str] = {}
            listed = False  # the managed flags are listed once per component
            for flag, (key_node, value_node) in flags.pairs.items():
                path = flags.child(flag)
                if self.report.check(path, key_node, formats.check_flag_name, flag) is None:
                    continue
                why = managed_flags.refusal(component, flag)
                if why is not None:
                    same = managed_flags.normalize(flag)
                    message = (
                        f"--{same} is managed by bootstrap: {why}"
                        if same == flag
                        else f"{echo(flag)} is --{same}, managed by bootstrap: {why}"
                    )
                    if not listed:
                        message += (
                            f". Flags bootstrap manages for {component}: "
                            f"{managed_flags.managed_list(component)}"
                        )
                        listed = True
                    self.report.error(path, key_node, message)
                    continue
                removed = removed_etcd_flag(etcd, flag) if component == "etcd" and etcd else None
                if removed is not None:
                    self.report.error(path, key_node, removed)
                    continue
                value = _flag_value(self.report, path, value_node)
                if value is None:
                    continue
                if len(value) > MAX_FLAG_VALUE:
                    self.report.error(
                        path, value_node, f"{len(value)} characters: at most {MAX_FLAG_VALUE}"
                    )
                    continue
                error, warning = managed_flags.check_value(component, flag, value)
                if error is not None:
                    self.report.error(path, value_node, error)
                    continue
                if warning is not None:
                    self.report.warn(path, value_node, warning)
                values[flag] = value
            if len(flags.pairs) > MAX_EXTRA_ARGS:
                self.report.error(
                    flags.path,
                    flags.node,
                    f"{len(flags.pairs)} flags: at most {MAX_EXTRA_ARGS} per component",
                )
            result[component] = values
        return result

    def timeouts(self, sec: Section) -> Timeouts:
        changes: dict[str, Any] = {}
        for key, field_name in _TIMEOUT_FIELDS.items():
            value = self.seconds(sec, key, MAX_TIMEOUT_SECONDS)
            if value is not None:
                changes[field_name] = value
        return replace(Timeouts(), **changes)

    def ssh_layer(self, sec: Section) -> dict[str, Any]:
        """The SSHSettings fields this mapping sets (a per-master layer merges over it)."""
        changes: dict[str, Any] = {}
        user = sec.parsed("user", formats.check_ssh_user)
        if user is not None:
            changes["user"] = user
        port = self.port(sec, "port")
        if port is not None:
            changes["port"] = port
        if sec.has("identityFile"):  # an explicit null means: no key file, use the agent
            identity = self.path(sec, "identityFile")
            if identity is not None or sec.given("identityFile") is None:
                changes["identity_file"] = identity
        known_hosts = self.path(sec, "knownHosts")
        if known_hosts is not None:
            changes["known_hosts"] = known_hosts
        policy = sec.choice("hostKeyPolicy", HOST_KEY_POLICIES)
        if policy is not None:
            changes["host_key_policy"] = policy
        sudo = sec.boolean("sudo")
        if sudo is not None:
            changes["sudo"] = sudo
        if sec.has("jumpHost"):  # replaced as a whole; an explicit null: connect directly
            jump = sec.section("jumpHost", JUMP_HOST_KEYS)
            changes["jump_host"] = self.jump_host(jump) if sec.given("jumpHost") else None
        timeout = self.seconds(sec, "connectTimeout", MAX_CONNECT_TIMEOUT_SECONDS)
        if timeout is not None:
            changes["connect_timeout"] = timeout
        return changes

    def jump_host(self, sec: Section) -> JumpHost | None:
        if not isinstance(sec.node, MappingNode):
            return None  # the wrong type is already reported
        address = sec.parsed("address", formats.check_connect_host, required=True)
        port = self.port(sec, "port")
        user = sec.parsed("user", formats.check_ssh_user)
        identity = self.path(sec, "identityFile")
        if address is None:
            return None
        return JumpHost(
            address=address,
            port=port if port is not None else JumpHost.port,
            user=user if user is not None else JumpHost.user,
            identity_file=identity,
        )

    def masters(self, top: Section, ssh_defaults: dict[str, Any]) -> list[_Draft]:
        given = top.given("masters", required=True)
        nodes = top.items("masters")
        if isinstance(given, SequenceNode) and not nodes:
            self.report.error("masters", given, "at least one master is required")
        drafts = []
        for index, node in enumerate(nodes):
            path = f"masters[{index}]"
            sec = Section(self.report, path, node, MASTER_KEYS)
            if not isinstance(node, MappingNode):
                continue
            name = self.label(sec, "name")
            address = sec.parsed("address", formats.parse_ip, required=True)
            address_node = sec.value_node("address")
            if address is not None and (address.is_unspecified or address.is_multicast):
                self.report.error(
                    sec.child("address"),
                    address_node,
                    f"{address} cannot be a master's address (unspecified or multicast)",
                )
                address = None
            ssh_host = sec.parsed("sshHost", formats.check_connect_host)
            layer = {**ssh_defaults, **self.ssh_layer(sec.section("ssh", SSH_KEYS))}
            drafts.append(
                _Draft(
                    path=path,
                    node=node,
                    name=name,
                    name_node=sec.value_node("name"),
                    address=address,
                    address_node=address_node,
                    ssh_host=ssh_host,
                    ssh=_ssh_settings(layer),
                )
            )
        return drafts

    def endpoint(self, top: Section, drafts: list[_Draft]) -> tuple[str, int] | None:
        parsed = top.parsed("controlPlaneEndpoint", formats.parse_endpoint)
        if top.given("controlPlaneEndpoint") is not None:
            if parsed is None:
                return None
            return parsed[0], parsed[1] if parsed[1] is not None else API_PORT
        first = drafts[0].address if drafts else None
        return (str(first), API_PORT) if first is not None else None

    # --- cross-field checks ------------------------------------------------------------

    def check_masters(self, top: Section, drafts: list[_Draft]) -> None:
        names: dict[str, _Draft] = {}
        addresses: dict[IPAddress, _Draft] = {}
        first_family: _Draft | None = None
        for draft in drafts:
            if draft.name is not None:
                if draft.name in names:
                    other = names[draft.name]
                    self.report.error(
                        f"{draft.path}.name",
                        draft.name_node,
                        f"duplicate name {draft.name!r} (also {other.path}, "
                        f"line {_line(other.name_node)})",
                    )
                else:
                    names[draft.name] = draft
            if draft.address is None:
                continue
            if draft.address in addresses:
                other = addresses[draft.address]
                self.report.error(
                    f"{draft.path}.address",
                    draft.address_node,
                    f"duplicate address {draft.address} (also {other.path}, "
                    f"line {_line(other.address_node)})",
                )
            else:
                addresses[draft.address] = draft
            if first_family is None:
                first_family = draft
            elif first_family.address and draft.address.version != first_family.address.version:
                self.report.error(
                    f"{draft.path}.address",
                    draft.address_node,
                    f"IPv{draft.address.version} address, but {first_family.path} is "
                    f"IPv{first_family.address.version}: all masters must use one IP family",
                )
        count = len(drafts)
        where = top.value_node("masters")
        if count == 1:
            self.report.warn(
                "masters",
                where,
                "a single master is for development only: etcd has no fault tolerance",
            )
        elif count and count % 2 == 0:
            self.report.warn(
                "masters",
                where,
                f"{count} masters tolerate no more failures than {count - 1} "
                f"({(count - 1) // 2}); use an odd number",
            )
        if count > MAX_MASTERS:
            self.report.error(
                "masters",
                where,
                f"{count} masters: at most {MAX_MASTERS} are supported (etcd members; "
                f"{LARGEST_SENSIBLE_ETCD} is the sensible maximum)",
            )
        elif count > LARGEST_SENSIBLE_ETCD:
            self.report.warn(
                "masters",
                where,
                f"{count} etcd members: more than {LARGEST_SENSIBLE_ETCD} slows every write "
                "without adding useful fault tolerance",
            )

    def check_subnets(
        self,
        networking: Section,
        service: formats.IPNetwork | None,
        pod: formats.IPNetwork | None,
        drafts: list[_Draft],
        top: Section,
        endpoint: tuple[str, int] | None,
    ) -> None:
        subnets = [(k, s) for k, s in (("serviceSubnet", service), ("podSubnet", pod)) if s]
        if service and pod and service.version == pod.version and service.overlaps(pod):
            self.report.error(
                networking.child("podSubnet"),
                networking.value_node("podSubnet"),
                f"{pod} overlaps networking.serviceSubnet {service}",
            )
        for draft in drafts:
            for key, subnet in subnets:
                if draft.address is not None and _contains(subnet, draft.address):
                    self.report.error(
                        f"{draft.path}.address",
                        draft.address_node,
                        f"{draft.address} lies inside networking.{key} {subnet}",
                    )
        endpoint_node = top.value_node("controlPlaneEndpoint")
        if endpoint is None or endpoint_node is None:
            return
        try:
            endpoint_ip = formats.parse_ip(endpoint[0])
        except ValueError:
            return  # a DNS name
        for key, subnet in subnets:
            if _contains(subnet, endpoint_ip):
                self.report.error(
                    "controlPlaneEndpoint",
                    endpoint_node,
                    f"{endpoint_ip} lies inside networking.{key} {subnet}",
                )


# --- helpers ---------------------------------------------------------------------------


def _default(sec: Section, key: str, value: T | None, default: T) -> T | None:
    """``default`` when the key is absent or null; otherwise the read value (None if bad)."""
    return default if sec.given(key) is None else value


def _contains(subnet: formats.IPNetwork, address: IPAddress) -> bool:
    return subnet.version == address.version and address in subnet


def _line(node: Node | None) -> str:
    return str(node.start_mark.line + 1) if node is not None else "?"


def _key_algorithm(text: str) -> KeyAlgorithm:
    assert text in KEY_ALGORITHMS  # checked by Section.choice
    return cast(KeyAlgorithm, text)


def _flag_value(report: Report, path: str, node: Node) -> str | None:
    """Flag values become strings; booleans in the flag spelling kube components use."""
    if isinstance(node, ScalarNode) and node.tag == TAG_BOOL:
        return "true" if str(node.value).lower() in ("true", "yes", "on", "y") else "false"
    if isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null":
        report.error(path, node, 'no value (write "" for an empty value)')
        return None
    return scalar_text(report, path, node)


def _ssh_settings(changes: dict[str, Any]) -> SSHSettings:
    base = SSHSettings(known_hosts=Path(os.path.expanduser(DEFAULT_KNOWN_HOSTS)))
    settings = replace(base, **changes)
    if "sudo" not in changes:  # a non-root login needs sudo unless told otherwise
        settings = replace(settings, sudo=settings.user != "root")
    return settings


def _master(draft: _Draft) -> Master:
    assert draft.name is not None and draft.address is not None
    return Master(
        name=draft.name,
        address=draft.address,
        ssh=draft.ssh,
        ssh_host=draft.ssh_host if draft.ssh_host is not None else str(draft.address),
    )
