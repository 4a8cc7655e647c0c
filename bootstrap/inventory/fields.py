"""Key names, defaults and limits of the inventory format, shared by the loader and the JSON schema.

One place, so the schema an editor completes from and the keys the loader accepts
cannot drift apart (schema.py asserts it describes exactly these keys).
"""

from __future__ import annotations

from .model import COMPONENTS, KeyAlgorithm

DEFAULT_CLUSTER_NAME = "kubernetes"
DEFAULT_SERVICE_SUBNET = "10.96.0.0/12"
DEFAULT_DNS_DOMAIN = "cluster.local"
DEFAULT_IMAGE_REPOSITORY = "registry.k8s.io"
DEFAULT_KEY_ALGORITHM: KeyAlgorithm = "ECDSA-P256"
DEFAULT_CA_VALIDITY = "87600h"
DEFAULT_CERT_VALIDITY = "8760h"
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
MAX_TIMEOUT_SECONDS = 86400.0
MAX_CONNECT_TIMEOUT_SECONDS = 3600.0
# kube-apiserver refuses a larger service range (--service-cluster-ip-range).
MIN_SERVICE_PREFIX = {4: 12, 6: 108}
# kubeadm puts cluster DNS on the 10th address of the service subnet.
MIN_SERVICE_ADDRESSES = 16
LARGEST_SENSIBLE_ETCD = 7
# A hard limit: every master gets its own PKI and etcd member, raft sends each write to
# every member, and nothing beyond seven has been run; fifteen leaves room to grow.
MAX_MASTERS = 15
# Certificates must outlive the run that issues them and leave time to renew: `init`
# waits up to several minutes per phase, `certs check` warns 30 days ahead by default,
# and etcd members whose peer certificates expired cannot rejoin each other. Below an
# hour a cluster is broken before anyone can react (`certValidity: 1s` expired two
# seconds after render).
MIN_VALIDITY_SECONDS = 3600
# Leaf certificates are re-issued by `certs renew`; beyond ten years (kubeadm's CA
# lifetime) a leaked key stays usable for a decade. CAs may live up to 100 years.
MAX_CERT_VALIDITY_SECONDS = 10 * 365 * 86400
MAX_CA_VALIDITY_SECONDS = 100 * 365 * 86400
# The default `certs check --warn-days`: a shorter certValidity fails that check at once.
CERTS_CHECK_WARN_DAYS = 30
# An inventory of seven masters with every setting is about 2 KiB; reading and validating
# 1 MiB takes about a second, where 50 MB took 27 s and 173 MB of memory.
MAX_INVENTORY_BYTES = 1 << 20
# What one inventory may ask to render: kube components have about 150 flags, the
# longest real values (cipher suites, feature gates) are well under 8 KiB, and every
# extra SAN is copied into each certificate of its kind on each master.
MAX_EXTRA_ARGS = 200
MAX_FLAG_VALUE = 8192
MAX_EXTRA_SANS = 100

TOP_KEYS: tuple[str, ...] = (
    "clusterName",
    "kubernetesVersion",
    "etcdVersion",
    "controlPlaneEndpoint",
    "networking",
    "imageRepository",
    "certificates",
    "encryptionAtRest",
    "caCertDirs",
    "extraArgs",
    "timeouts",
    "ssh",
    "masters",
)
NETWORKING_KEYS: tuple[str, ...] = ("serviceSubnet", "podSubnet", "dnsDomain")
CERTIFICATES_KEYS: tuple[str, ...] = (
    "keyAlgorithm",
    "caValidity",
    "certValidity",
    "apiServerExtraSANs",
    "etcdExtraSANs",
)
TIMEOUTS_KEYS: tuple[str, ...] = (
    "etcdQuorum",
    "apiserverReady",
    "componentReady",
    "etcdPromote",
    "pollInterval",
)
SSH_KEYS: tuple[str, ...] = (
    "user",
    "port",
    "identityFile",
    "knownHosts",
    "hostKeyPolicy",
    "sudo",
    "jumpHost",
    "connectTimeout",
)
JUMP_HOST_KEYS: tuple[str, ...] = ("address", "port", "user", "identityFile")
MASTER_KEYS: tuple[str, ...] = ("name", "address", "sshHost", "ssh")
HOST_KEY_POLICIES: tuple[str, ...] = ("strict", "accept-new")

# Where each nested key lives, to say "belongs under networking" for a misplaced key.
KEY_HOMES: dict[str, str] = {
    **{key: "networking" for key in NETWORKING_KEYS},
    **{key: "certificates" for key in CERTIFICATES_KEYS},
    **{key: "timeouts" for key in TIMEOUTS_KEYS},
    **{key: "ssh" for key in SSH_KEYS},
    **{key: "masters[]" for key in ("name", "address", "sshHost")},
    **{key: "extraArgs" for key in COMPONENTS},
}
