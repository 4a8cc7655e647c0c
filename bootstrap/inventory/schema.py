"""The inventory format as a JSON Schema (draft 2020-12), for editors' completion.

Built from the same key lists, defaults and limits as the loader (``fields``), and
``_object`` refuses to describe a key set that differs from the loader's. The schema
is the format's shape; the loader checks more (overlapping subnets, duplicates, IP
families, which the schema cannot express).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .fields import (
    CERTIFICATES_KEYS,
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
    MASTER_KEYS,
    MAX_CONNECT_TIMEOUT_SECONDS,
    MAX_TIMEOUT_SECONDS,
    NETWORKING_KEYS,
    SSH_KEYS,
    TIMEOUTS_KEYS,
    TOP_KEYS,
)
from .flags import managed_list
from .model import (
    API_PORT,
    COMPONENTS,
    DEFAULT_CA_CERT_DIRS,
    KEY_ALGORITHMS,
    JumpHost,
    SSHSettings,
    Timeouts,
)
from .versions import SUPPORTED_ETCD_MINORS, SUPPORTED_KUBERNETES_MINORS

Schema = dict[str, Any]

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
DNS_LABEL_PATTERN = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DURATION_PATTERN = "^([0-9]+[smhd])+$"
CIDR_PATTERN = "^[0-9A-Fa-f:.]+/[0-9]{1,3}$"
FLAG_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._-]*$"


def _ref(name: str) -> Schema:
    return {"$ref": f"#/$defs/{name}"}


def _nullable(schema: Schema) -> Schema:
    """YAML sections whose keys are all commented out read as null: same as absent."""
    kind = schema["type"]
    return {**schema, "type": [kind, "null"]}


def _object(
    keys: Sequence[str],
    properties: dict[str, Schema],
    *,
    description: str,
    required: Sequence[str] = (),
) -> Schema:
    if list(properties) != list(keys):
        raise AssertionError(f"schema keys {list(properties)} differ from the loader's {keys}")
    schema: Schema = {
        "type": "object",
        "description": description,
        "additionalProperties": False,
        "properties": properties,
    }
    if required:
        schema["required"] = list(required)
    return schema


def _version_pattern(major: int, minors: Sequence[int], suffix: str) -> str:
    alternatives = "|".join(str(m) for m in minors)
    return rf"^v?{major}\.({alternatives})\.[0-9]+{suffix}$"


def _seconds(description: str, default: float, maximum: float) -> Schema:
    return {
        "type": "number",
        "description": description,
        "default": default,
        "exclusiveMinimum": 0,
        "maximum": maximum,
    }


def _ssh(*, per_master: bool) -> Schema:
    defaults = SSHSettings()
    jump_host: Schema = {
        **_ref("jumpHost"),
        "description": (
            "Connect through this bastion host (SSH ProxyJump); a master's jumpHost "
            "replaces the default one as a whole. "
            + (
                "null: connect directly, even if the defaults name a jump host."
                if per_master
                else "Omit to connect directly."
            )
        ),
    }
    return _object(
        SSH_KEYS,
        {
            "user": {
                "type": "string",
                "description": "Login user.",
                "default": defaults.user,
            },
            "port": {**_ref("port"), "description": "SSH port.", "default": defaults.port},
            "identityFile": {
                "type": ["string", "null"],
                "description": (
                    "Private key file; relative paths are relative to the inventory file, "
                    "~ is expanded. null or absent: ssh-agent and default keys."
                ),
            },
            "knownHosts": {
                "type": "string",
                "description": "known_hosts file host keys are verified against.",
                "default": DEFAULT_KNOWN_HOSTS,
            },
            "hostKeyPolicy": {
                "enum": list(HOST_KEY_POLICIES),
                "description": (
                    "strict: the host key must be in knownHosts. accept-new: trust a host "
                    "seen for the first time and record its key (a changed key still fails)."
                ),
                "default": defaults.host_key_policy,
            },
            "sudo": {
                "type": "boolean",
                "description": (
                    "Run remote commands through `sudo -n`. Default: true when user is not root."
                ),
            },
            "jumpHost": _or_null(jump_host) if per_master else jump_host,
            "connectTimeout": _seconds(
                "Seconds to wait for a TCP connection and the SSH handshake.",
                defaults.connect_timeout,
                MAX_CONNECT_TIMEOUT_SECONDS,
            ),
        },
        description=(
            "SSH settings for this master, merged key by key over the top-level ssh defaults."
            if per_master
            else "SSH defaults for every master (each master may override any key)."
        ),
    )


def json_schema() -> Schema:
    timeouts = Timeouts()
    kube_major = SUPPORTED_KUBERNETES_MINORS[0][0]
    etcd_major = SUPPORTED_ETCD_MINORS[0][0]
    first, last = SUPPORTED_KUBERNETES_MINORS[0], SUPPORTED_KUBERNETES_MINORS[-1]
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "k8s-bootstrap inventory",
        **_object(
            TOP_KEYS,
            {
                "clusterName": {
                    **_ref("dnsLabel"),
                    "description": "Cluster name (DNS-1123 label), used in kubeconfigs.",
                    "default": DEFAULT_CLUSTER_NAME,
                },
                "kubernetesVersion": {
                    "type": "string",
                    "description": (
                        f"Kubernetes version, v{first[0]}.{first[1]} to v{last[0]}.{last[1]} "
                        "(e.g. v1.34.1; pre-releases -alpha.N, -beta.N, -rc.N). It is the "
                        "control-plane images' tag, so no build metadata (+...)."
                    ),
                    "pattern": _version_pattern(
                        kube_major,
                        [minor for _, minor in SUPPORTED_KUBERNETES_MINORS],
                        r"(-(alpha|beta|rc)\.(0|[1-9][0-9]*))?",
                    ),
                },
                "etcdVersion": {
                    "type": "string",
                    "description": (
                        "etcd version, 3.4.x to 3.6.x (image tag; a -0 suffix is allowed). "
                        "Default: what kubeadm deploys with kubernetesVersion's minor."
                    ),
                    "pattern": _version_pattern(
                        etcd_major, [minor for _, minor in SUPPORTED_ETCD_MINORS], "(-[0-9]+)?"
                    ),
                },
                "controlPlaneEndpoint": {
                    "type": "string",
                    "description": (
                        "host[:port] clients use for the API (VIP, load balancer or DNS name; "
                        f"IPv6 as [addr]:port). Default: the first master's address, port "
                        f"{API_PORT}."
                    ),
                },
                "networking": _nullable(
                    _object(
                        NETWORKING_KEYS,
                        {
                            "serviceSubnet": {
                                **_ref("cidr"),
                                "description": "Service IP range; its first address is the "
                                "`kubernetes` service.",
                                "default": DEFAULT_SERVICE_SUBNET,
                            },
                            "podSubnet": {
                                "type": ["string", "null"],
                                "pattern": CIDR_PATTERN,
                                "description": "Pod IP range (optional; enables node CIDR "
                                "allocation). Must not overlap serviceSubnet.",
                            },
                            "dnsDomain": {
                                "type": "string",
                                "description": "Cluster DNS domain.",
                                "default": DEFAULT_DNS_DOMAIN,
                            },
                        },
                        description="Cluster networks.",
                    )
                ),
                "imageRepository": {
                    "type": "string",
                    "description": "Registry (and path) the control-plane images come from.",
                    "default": DEFAULT_IMAGE_REPOSITORY,
                },
                "certificates": _nullable(
                    _object(
                        CERTIFICATES_KEYS,
                        {
                            "keyAlgorithm": {
                                "enum": list(KEY_ALGORITHMS),
                                "description": "Key type of every generated key.",
                                "default": DEFAULT_KEY_ALGORITHM,
                            },
                            "caValidity": {
                                **_ref("duration"),
                                "description": "Lifetime of the CAs (1h to 100 years).",
                                "default": DEFAULT_CA_VALIDITY,
                            },
                            "certValidity": {
                                **_ref("duration"),
                                "description": "Lifetime of leaf and kubeconfig client certs "
                                "(1h to 10 years).",
                                "default": DEFAULT_CERT_VALIDITY,
                            },
                            "apiServerExtraSANs": {
                                **_ref("sans"),
                                "description": "Extra names/IPs in the apiserver certificate.",
                            },
                            "etcdExtraSANs": {
                                **_ref("sans"),
                                "description": "Extra names/IPs in the etcd server and peer "
                                "certificates.",
                            },
                        },
                        description="The generated PKI.",
                    )
                ),
                "encryptionAtRest": {
                    "type": "boolean",
                    "description": "Encrypt Secrets in etcd (generated key, "
                    "EncryptionConfiguration).",
                    "default": True,
                },
                "caCertDirs": {
                    "type": "array",
                    "items": {"type": "string", "pattern": "^/"},
                    "uniqueItems": True,
                    "description": (
                        "Host directories holding the system's CA certificates, mounted "
                        "read-only into kube-apiserver and kube-controller-manager (kubeadm "
                        "mounts those of its list that exist on the host). RHEL-family "
                        "masters: [/etc/ssl/certs, /etc/pki/ca-trust, /etc/pki/tls/certs]."
                    ),
                    "default": list(DEFAULT_CA_CERT_DIRS),
                },
                "extraArgs": _nullable(
                    _object(
                        COMPONENTS,
                        {
                            component: {
                                **_ref("flags"),
                                "description": "Flags bootstrap manages are refused: "
                                + managed_list(component),
                            }
                            for component in COMPONENTS
                        },
                        description="Extra flags per component, merged over the defaults "
                        "(same name wins). Flags bootstrap computes and relies on are refused.",
                    )
                ),
                "timeouts": _nullable(
                    _object(
                        TIMEOUTS_KEYS,
                        {
                            "etcdQuorum": _seconds(
                                "Wait for etcd quorum.", timeouts.etcd_quorum, MAX_TIMEOUT_SECONDS
                            ),
                            "apiserverReady": _seconds(
                                "Wait for kube-apiserver /readyz.",
                                timeouts.apiserver_ready,
                                MAX_TIMEOUT_SECONDS,
                            ),
                            "componentReady": _seconds(
                                "Wait for controller-manager and scheduler health.",
                                timeouts.component_ready,
                                MAX_TIMEOUT_SECONDS,
                            ),
                            "etcdPromote": _seconds(
                                "Wait for a learner member to be promoted.",
                                timeouts.etcd_promote,
                                MAX_TIMEOUT_SECONDS,
                            ),
                            "pollInterval": _seconds(
                                "Pause between checks while waiting.",
                                timeouts.poll_interval,
                                MAX_TIMEOUT_SECONDS,
                            ),
                        },
                        description="Named waits, in seconds.",
                    )
                ),
                "ssh": _nullable(_ssh(per_master=False)),
                "masters": {
                    "type": "array",
                    "description": "The control-plane machines (an odd number: 3, 5 or 7).",
                    "minItems": 1,
                    "items": _ref("master"),
                },
            },
            description=(
                "Masters and settings for a highly-available Kubernetes control plane with "
                "stacked etcd (see inventory.example.yaml)."
            ),
            required=("kubernetesVersion", "masters"),
        ),
        "$defs": {
            "dnsLabel": {"type": "string", "pattern": DNS_LABEL_PATTERN, "maxLength": 63},
            "ipAddress": {"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]},
            "cidr": {"type": "string", "pattern": CIDR_PATTERN},
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "duration": {
                "type": "string",
                "pattern": DURATION_PATTERN,
                "description": "A number with unit s, m, h or d (e.g. 8760h, 365d).",
            },
            "sans": {
                "type": ["array", "null"],
                "items": {
                    "type": "string",
                    "description": "IP address or DNS name; wildcards like *.example.com.",
                },
            },
            "flags": {
                "type": ["object", "null"],
                "description": "flag name (without leading dashes) -> value",
                "propertyNames": {"pattern": FLAG_PATTERN},
                "additionalProperties": {"type": ["string", "number", "boolean"]},
            },
            "jumpHost": _object(
                JUMP_HOST_KEYS,
                {
                    "address": {"type": "string", "description": "IP or DNS name."},
                    "port": {**_ref("port"), "default": JumpHost.port},
                    "user": {"type": "string", "default": JumpHost.user},
                    "identityFile": {
                        "type": ["string", "null"],
                        "description": "Private key for the jump host (relative to the "
                        "inventory file).",
                    },
                },
                description="A bastion host to connect through.",
                required=("address",),
            ),
            "ssh": _ssh(per_master=True),
            "master": _object(
                MASTER_KEYS,
                {
                    "name": {
                        **_ref("dnsLabel"),
                        "description": "Node and etcd member name (DNS-1123 label).",
                    },
                    "address": {
                        **_ref("ipAddress"),
                        "description": "Advertise address for etcd and kube-apiserver.",
                    },
                    "sshHost": {
                        "type": "string",
                        "description": "Where to connect over SSH. Default: address.",
                    },
                    "ssh": _or_null(_ref("ssh")),
                },
                description="One control-plane machine.",
                required=("name", "address"),
            ),
        },
    }


def _or_null(schema: Schema) -> Schema:
    """A referenced schema, or null (a $ref keeps the referenced type, so wrap it)."""
    description = schema.pop("description", None)
    wrapped: Schema = {"anyOf": [{"type": "null"}, schema]}
    if description:
        wrapped["description"] = description
    return wrapped
