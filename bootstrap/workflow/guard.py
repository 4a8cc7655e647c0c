"""Before a run writes anything: is this the running cluster's state dir, and would the run
change the versions it runs?

Read from the hosts in one round trip each (their ``pki/ca.crt`` and the image of each
static pod manifest), compared with the local state dir's CA (read as a file: nothing is
generated before the answer) and the inventory. Refusals are exit 2, before any write
on any host and before a PKI is generated into an empty state dir (issue 16, items 2, 3):

- A state dir without a CA while the hosts have one, or a CA that is not the hosts', is
  the wrong state dir: pushing its PKI would replace the cluster CA on every master (the
  "32 changed" plan), which is never a routine change. Both fingerprints are shown, and
  a state dir nearby that holds the hosts' CA is named.
- A cluster's Kubernetes and etcd versions change only through ``bootstrap upgrade``
  (one minor at a time, snapshot first, per-master health gates, rollback). ``init``,
  ``add-master`` and ``certs renew`` render from the inventory, so an edited (or stale)
  kubernetesVersion/etcdVersion would roll every pod to it, a downgrade included.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bootstrap.errors import InputError
from bootstrap.inventory.model import COMPONENTS, KUBERNETES_DIR, MANIFESTS_DIR, Inventory, Master
from bootstrap.local import yamltext
from bootstrap.model import RemoteHost
from bootstrap.run.session import Session

KUBE_COMPONENTS = COMPONENTS[1:]
HOST_CA = f"{KUBERNETES_DIR}/pki/ca.crt"
_SCRIPT = f"echo @@ca; cat {HOST_CA} 2>/dev/null\n" + "".join(
    f"echo '@@manifest {c}'; cat {MANIFESTS_DIR}/{c}.yaml 2>/dev/null\n" for c in COMPONENTS
)


class ClusterMismatch(InputError):
    """The state dir is not the running cluster's (exit 2; nothing was done). ``detail``
    is the comparison alone (for callers that go on and only warn)."""

    def __init__(self, message: str, *, detail: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.detail = detail


class VersionChange(InputError):
    """The run would change a running cluster's versions (exit 2; use `upgrade`)."""


@dataclass(frozen=True)
class HostView:
    name: str
    ca_pem: bytes | None
    images: dict[str, str] = field(default_factory=dict)  # component -> image, if it has one


def read_host(name: str, host: RemoteHost) -> HostView:
    text = host.run(_SCRIPT, sudo=True, check=False, timeout=20).stdout
    ca: bytes | None = None
    images: dict[str, str] = {}
    for chunk in text.split(b"@@")[1:]:
        head, _, body = chunk.partition(b"\n")
        key = head.decode("utf-8", "replace").strip()
        if key == "ca":
            ca = body.strip() + b"\n" if body.strip() else None
        elif key.startswith("manifest "):
            image = manifest_image(body)
            if image:
                images[key.split(" ", 1)[1]] = image
    return HostView(name, ca, images)


def read_hosts(session: Session, masters: Sequence[Master] | None = None) -> dict[str, HostView]:
    """Every connected master's view (``masters``: those; unreachable ones are left out)."""
    chosen = [m for m in (masters or session.inventory.masters) if m.name in session.hosts]
    return session.each_host(lambda m, h: read_host(m.name, h), chosen)


def manifest_image(data: bytes) -> str | None:
    try:
        doc = yamltext.load(data)  # libyaml: the apiserver's manifest is large
        return str(doc["spec"]["containers"][0]["image"])
    except (yaml.YAMLError, KeyError, IndexError, TypeError):
        return None


def image_tag(image: str) -> str:
    _name, sep, tag = image.rpartition(":")
    return tag if sep and "/" not in tag else ""


# --- the CA ----------------------------------------------------------------------------------


def fingerprint(pem: bytes) -> str:
    """What `openssl x509 -noout -fingerprint -sha256` prints (after its "=")."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        der = x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
    except ValueError:
        return "unreadable certificate, file sha256 " + hashlib.sha256(pem).hexdigest()
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def local_ca(state_dir: Path) -> bytes | None:
    from bootstrap.pki import shared_pki_dir

    try:
        return (shared_pki_dir(state_dir) / "ca.crt").read_bytes()
    except OSError:
        return None


def _candidates(state_dir: Path) -> Iterable[Path]:
    """State dirs where the right one may be: the state dir's siblings and ./.bootstrap/*."""
    seen: set[Path] = set()
    for parent in (state_dir.parent, Path(".bootstrap")):
        try:
            entries = sorted(parent.iterdir())
        except OSError:
            continue
        for entry in entries:
            key = entry.resolve()
            if key not in seen and entry.is_dir():
                seen.add(key)
                yield entry


def find_state_dirs(state_dir: Path, wanted: str) -> list[Path]:
    """State dirs nearby whose CA has the fingerprint ``wanted``."""
    found = []
    for candidate in _candidates(state_dir):
        pem = local_ca(candidate)
        same = candidate.resolve() == state_dir.resolve()
        if pem is not None and not same and fingerprint(pem) == wanted:
            found.append(candidate)
    return found


def check_ca(session: Session, views: Mapping[str, HostView]) -> None:
    """Refuse (ClusterMismatch) unless every master that has a CA has the state dir's."""
    state_dir = session.state_dir
    mine = local_ca(state_dir)
    theirs: dict[str, list[str]] = {}  # fingerprint -> masters
    for name, view in views.items():
        if view.ca_pem is not None:
            theirs.setdefault(fingerprint(view.ca_pem), []).append(name)
    if not theirs:
        return  # fresh hosts: nothing to compare with
    my_fp = fingerprint(mine) if mine is not None else None
    foreign = {fp: names for fp, names in theirs.items() if fp != my_fp}
    if not foreign:
        return
    shown = "; ".join(
        f"{', '.join(sorted(names))}: CA SHA256 {fp}" for fp, names in sorted(foreign.items())
    )
    biggest = max(foreign.items(), key=lambda kv: len(kv[1]))[0]
    found = find_state_dirs(state_dir, biggest)
    if len(found) == 1:
        where = f"{found[0]} holds that CA: use --state-dir {found[0]}"
    elif found:
        where = (
            f"{', '.join(map(str, found))} hold that CA: use --state-dir with the one that is "
            "current (copies of a state dir can be behind)"
        )
    else:
        where = (
            "use --state-dir with the directory whose pki/ca.crt has that fingerprint "
            "(`openssl x509 -noout -fingerprint -sha256 -in DIR/pki/ca.crt`), or restore it "
            "from a backup"
        )
    if mine is None:
        detail = (
            f"the state dir {state_dir} holds no cluster CA, but the masters already run a "
            f"cluster ({shown})"
        )
        message = (
            f"{detail}: this is not that cluster's state dir. Nothing was written and no "
            "PKI was generated"
        )
    else:
        detail = (
            f"the cluster CA on the masters is not the one in the state dir {state_dir} "
            f"(state dir: CA SHA256 {my_fp}; {shown})"
        )
        message = (
            f"{detail}: this state dir belongs to another cluster (or those masters do). A "
            "CA is never replaced by a routine run; nothing was written"
        )
    raise ClusterMismatch(
        message,
        detail=detail,
        hint=f"{where}. To put a new cluster on these masters instead, tear the old one "
        "down first with its own state dir (`bootstrap reset`)",
    )


# --- versions ----------------------------------------------------------------------------------


def desired_tags(inventory: Inventory) -> dict[str, str]:
    from bootstrap.manifests.components import etcd_image, kubernetes_image

    tags = {c: image_tag(kubernetes_image(inventory, c)) for c in KUBE_COMPONENTS}
    tags["etcd"] = image_tag(etcd_image(inventory))
    return tags


@dataclass(frozen=True)
class Drift:
    master: str
    component: str
    running: str  # tag
    wanted: str  # tag


def version_drift(inventory: Inventory, views: Mapping[str, HostView]) -> list[Drift]:
    wanted = desired_tags(inventory)
    drift = []
    for name, view in sorted(views.items()):
        for component in COMPONENTS:
            image = view.images.get(component)
            tag = image_tag(image) if image else ""
            if tag and tag != wanted[component]:
                drift.append(Drift(name, component, tag, wanted[component]))
    return drift


def _semver(tag: str) -> tuple[int, ...] | None:
    core = tag.lstrip("v").split("-", 1)[0].split("+", 1)[0]
    try:
        parts = tuple(int(p) for p in core.split("."))
    except ValueError:
        return None
    return parts if len(parts) == 3 else None


def _running(views: Mapping[str, HostView], components: Sequence[str]) -> dict[str, list[str]]:
    """tag -> masters running it, over the given components."""
    found: dict[str, list[str]] = {}
    for name, view in sorted(views.items()):
        tags = {image_tag(view.images[c]) for c in components if c in view.images}
        for tag in tags - {""}:
            found.setdefault(tag, []).append(name)
    return found


def _text(found: Mapping[str, Sequence[str]]) -> str:
    return ", ".join(f"{tag} on {', '.join(names)}" for tag, names in sorted(found.items()))


def check_versions(session: Session, views: Mapping[str, HostView], command: str) -> None:
    """Refuse (VersionChange) when rendering the inventory would change what runs."""
    inventory = session.inventory
    drift = version_drift(inventory, views)
    if not drift:
        return
    kube = _running(views, KUBE_COMPONENTS)
    etcd = _running(views, ("etcd",))
    wanted = desired_tags(inventory)
    source = inventory.source or "the inventory"
    kube_drift = any(d.component != "etcd" for d in drift)
    etcd_drift = any(d.component == "etcd" for d in drift)
    parts = []
    if kube_drift:
        parts.append(f"Kubernetes {_text(kube)} but the inventory says {wanted['kube-apiserver']}")
    if etcd_drift:
        parts.append(f"etcd {_text(etcd)} but the inventory says {wanted['etcd']}")
    message = (
        f"{command} would change the versions the cluster runs: "
        + "; ".join(parts)
        + ". A running cluster's versions change only through `bootstrap upgrade`; "
        "nothing was written"
    )
    raise VersionChange(message, hint=_version_hint(kube, etcd, wanted, source))


def _version_hint(
    kube: Mapping[str, Sequence[str]],
    etcd: Mapping[str, Sequence[str]],
    wanted: Mapping[str, str],
    source: object,
) -> str:
    def newest(found: Mapping[str, Sequence[str]]) -> str:
        return max(found, key=lambda t: _semver(t) or (0, 0, 0))

    hints = []
    kube_now = newest(kube) if kube else wanted["kube-apiserver"]
    etcd_now = newest(etcd) if etcd else wanted["etcd"]
    if len(kube) > 1 or len(etcd) > 1:
        hints.append(
            f"the masters run different versions (an upgrade that stopped half way): "
            f"resume it with `bootstrap upgrade --to {kube_now}`"
        )
    want_kube = _semver(wanted["kube-apiserver"])
    want_etcd = _semver(wanted["etcd"])
    up_kube = kube and want_kube is not None and want_kube > (_semver(kube_now) or (0, 0, 0))
    up_etcd = etcd and want_etcd is not None and want_etcd > (_semver(etcd_now) or (0, 0, 0))
    if up_kube or up_etcd:
        to = wanted["kube-apiserver"] if up_kube else kube_now
        pin = f" --etcd-version {wanted['etcd'].split('-', 1)[0]}" if up_etcd else ""
        hints.append(
            f"to move the cluster there: `bootstrap upgrade --to {to}{pin}` (one minor at a "
            "time, etcd snapshot first, master by master)"
        )
    else:
        hints.append("downgrades are not supported (restore an etcd snapshot to go back)")
    hints.append(
        f"to leave the cluster as it is, set kubernetesVersion: {kube_now} and etcdVersion: "
        f"{etcd_now.split('-', 1)[0]} in {source}"
    )
    return "; ".join(hints)


def check(session: Session, command: str, *, versions: bool = True) -> dict[str, HostView]:
    """Both checks against every connected master; returns what was read."""
    views = read_hosts(session)
    check_ca(session, views)
    if versions:
        check_versions(session, views, command)
    return views
