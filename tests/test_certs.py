"""certs check / renew naming, kubeadm's table format, the upgrade version rules and
snapshot pruning: the pure parts, against a real PKI (ensure_pki in tmp_path) and the
real remote-output parser. The lab parts are in test_certs_lab.py."""

from __future__ import annotations

import base64
import os
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from bootstrap.day2.certs import (
    HostCerts,
    cert_names,
    check,
    expires_text,
    layout,
    parse_host_certs,
    renew_labels,
    short_duration,
    tables,
)
from bootstrap.day2.renew import expired_etcd_certs
from bootstrap.day2.snapshot import kept_snapshots, prune, snapshot_name
from bootstrap.day2.upgrade import cluster_versions, image_tag, plan_upgrade
from bootstrap.errors import UsageError
from bootstrap.inventory.model import Inventory
from bootstrap.pki import ClusterPKI, ensure_pki
from tests.pki_support import NOW, make_inventory

KUBEADM_ROWS = [
    "admin.conf",
    "apiserver",
    "apiserver-etcd-client",
    "apiserver-kubelet-client",
    "controller-manager.conf",
    "etcd-healthcheck-client",
    "etcd-peer",
    "etcd-server",
    "front-proxy-client",
    "kubelet.conf",
    "scheduler.conf",
    "super-admin.conf",
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> tuple[Inventory, Path, ClusterPKI]:
    inventory = make_inventory()
    state = tmp_path_factory.mktemp("state")
    return inventory, state, ensure_pki(inventory, state, now=NOW)


def host_view(pki: ClusterPKI, master: str) -> HostCerts:
    """What read_host_certs would return for a master holding exactly the state's files."""
    certs: dict[str, x509.Certificate] = {}
    keys = set()
    for path, spec in pki.host_files(master).items():
        if path.endswith(".crt"):
            certs[path] = x509.load_pem_x509_certificate(spec.content)
        elif path.endswith(".key"):
            keys.add(path)
    for path, spec in pki.kubeconfig_files(master).items():
        user = yaml.safe_load(spec.content)["users"][0]["user"]
        pem = base64.b64decode(user["client-certificate-data"])
        certs[path] = x509.load_pem_x509_certificate(pem)
    return HostCerts(certs, frozenset(keys))


# --- kubeadm's formats -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-3600, "<invalid>"),
        (-2, "<invalid>"),
        (-1, "0s"),  # within a second: "almost now", as kubeadm tolerates skew
        (0, "0s"),
        (59, "59s"),
        (60, "1m"),
        (3599, "59m"),
        (3600, "1h"),
        (23 * 3600 + 3599, "23h"),
        (24 * 3600, "1d"),
        (364 * 86400, "364d"),
        (365 * 86400, "1y"),
        (9 * 365 * 86400 + 300 * 86400, "9y"),
    ],
)
def test_residual_time_is_kubeadms_short_duration(seconds: int, text: str) -> None:
    assert short_duration(timedelta(seconds=seconds)) == text


def test_expires_uses_gos_layout() -> None:
    assert expires_text(NOW) == "Mar 01, 2026 12:00 UTC"
    assert expires_text(None) == "MISSING"


def test_layout_pads_columns_like_tabwriter() -> None:
    text = layout([["A", "EXPIRES", "LAST"], ["longer-name-here", "x", "y"]])
    lines = text.splitlines()
    assert lines[0].index("EXPIRES") == len("longer-name-here") + 3
    assert lines[1].index("x") == lines[0].index("EXPIRES")
    assert lines[0].index("LAST") == lines[0].index("EXPIRES") + 10  # min width 10


# --- rows from a master's certificates ---------------------------------------------------


def test_tables_list_kubeadms_names_and_cas(cluster: tuple[Inventory, Path, ClusterPKI]) -> None:
    inventory, state, pki = cluster
    found = {m.name: host_view(pki, m.name) for m in inventory.masters}
    result = check(inventory, state, found, now=NOW)
    first = [r for r in result.rows if r.master == "cp1"]
    assert [r.name for r in first if r.kind == "certificate"] == KUBEADM_ROWS
    assert [r.name for r in first if r.kind == "ca"] == ["ca", "etcd-ca", "front-proxy-ca"]
    second = [r.name for r in result.rows if r.master == "cp2" and r.kind == "certificate"]
    assert second == [n for n in KUBEADM_ROWS if n != "super-admin.conf"]  # init node only
    authority = {r.name: r.authority for r in first if r.kind == "certificate"}
    assert authority["etcd-peer"] == "etcd-ca"
    assert authority["front-proxy-client"] == "front-proxy-ca"
    assert authority["admin.conf"] == "ca"
    assert all(r.local == "same" and not r.externally_managed for r in result.rows)
    # A year of validity, checked at issue time: nothing inside the 30-day window.
    assert result.ok(), result.problems()
    text = tables(first, NOW + timedelta(days=1))
    header = text.splitlines()[0].split()
    assert header[:3] == ["CERTIFICATE", "EXPIRES", "RESIDUAL"]
    assert "CERTIFICATE AUTHORITY   EXPIRES" in text
    assert "364d" in text and "9y" in text


def test_expired_warning_missing_drift_and_external(
    cluster: tuple[Inventory, Path, ClusterPKI],
) -> None:
    inventory, state, pki = cluster
    found = {m.name: host_view(pki, m.name) for m in inventory.masters}
    # cp2 lost its apiserver.crt, runs a peer cert the state does not hold, has no ca.key.
    cp2 = dict(found["cp2"].certs)
    del cp2["/etc/kubernetes/pki/apiserver.crt"]
    cp2["/etc/kubernetes/pki/etcd/peer.crt"] = found["cp3"].certs[
        "/etc/kubernetes/pki/etcd/peer.crt"
    ]
    found["cp2"] = HostCerts(cp2, found["cp2"].keys - {"/etc/kubernetes/pki/ca.key"})

    in_window = check(inventory, state, found, now=NOW + timedelta(days=340))
    problems = in_window.problems()
    assert "cp1: apiserver warning (25d left)" in problems
    assert "cp2: apiserver missing" in problems
    assert "cp2: etcd-peer differs from the local state (drift)" in problems
    rows = {(r.master, r.name): r for r in in_window.rows}
    assert rows[("cp2", "ca")].externally_managed
    assert rows[("cp2", "admin.conf")].externally_managed  # signed by the keyless ca
    assert not rows[("cp2", "etcd-peer")].externally_managed

    expired = check(inventory, state, found, now=NOW + timedelta(days=366))
    assert "cp1: etcd-server expired (<invalid> left)" in expired.problems()
    doc = expired.to_json()
    assert doc["ok"] is False
    peer = next(c for c in doc["masters"]["cp1"]["certificates"] if c["name"] == "etcd-peer")
    assert peer["status"] == "expired" and peer["caName"] == "etcd-ca"
    assert peer["residualTimeSeconds"] < 0
    cas = doc["masters"]["cp1"]["certificateAuthorities"]
    assert [c["status"] for c in cas] == ["ok", "ok", "ok"]
    # A zero-day window still flags expired certificates.
    assert not check(inventory, state, found, warn=timedelta(0), now=NOW + timedelta(days=366)).ok()


def test_parse_host_certs_reads_the_remote_script_output(
    cluster: tuple[Inventory, Path, ClusterPKI],
) -> None:
    _inventory, _state, pki = cluster
    ca = pki.ca().cert_pem.decode()
    admin = pki.client("cp1", "admin.conf").cert_pem.decode()
    text = (
        f"@@CERT /etc/kubernetes/pki/ca.crt\n{ca}"
        "@@KEY /etc/kubernetes/pki/ca.key\n"
        "@@CERT /etc/kubernetes/pki/broken.crt\nnot a pem\n"
        f"@@CERT /etc/kubernetes/admin.conf\n{admin}"
        "@@END\n"
    )
    found = parse_host_certs(text)
    assert set(found.certs) == {"/etc/kubernetes/pki/ca.crt", "/etc/kubernetes/admin.conf"}
    assert found.keys == {"/etc/kubernetes/pki/ca.key"}


def test_expired_etcd_certs_names_the_member_certs(
    cluster: tuple[Inventory, Path, ClusterPKI],
) -> None:
    inventory, _state, pki = cluster
    found = {m.name: host_view(pki, m.name) for m in inventory.masters}
    assert expired_etcd_certs(found, NOW) == []
    late = expired_etcd_certs(found, NOW + timedelta(days=400))
    assert "cp1: etcd/peer.crt" in late and "cp3: etcd/server.crt" in late
    assert len(late) == 6


# --- renew names ---------------------------------------------------------------------------


def test_renew_labels(cluster: tuple[Inventory, Path, ClusterPKI]) -> None:
    inventory, state, _pki = cluster
    everything = renew_labels(inventory, state, ["all"])
    assert renew_labels(inventory, state, []) == everything
    assert "kubeconfig/admin" in everything and "kubeconfig/super-admin" in everything
    assert "cp2/etcd/peer" in everything and "cp3/kubeconfig/kubelet" in everything
    assert len(everything) == 3 * 7 + 3 * 3 + 2  # leaves, per-master clients, shared
    assert renew_labels(inventory, state, ["etcd-peer"]) == [
        "cp1/etcd/peer",
        "cp2/etcd/peer",
        "cp3/etcd/peer",
    ]
    assert renew_labels(inventory, state, ["admin.conf"]) == ["kubeconfig/admin"]
    for refused in (["ca"], ["etcd-ca"], ["sa"], ["nonsense"]):
        with pytest.raises(UsageError) as err:
            renew_labels(inventory, state, refused)
        assert err.value.exit_code == 2
        assert "renewable: all, admin.conf" in (err.value.hint or "")
    with pytest.raises(UsageError) as err:
        renew_labels(inventory, state, ["front-proxy-ca"])
    assert "never renewed" in (err.value.hint or "")


def test_renew_keeps_shape_never_touches_cas_or_sa(
    cluster: tuple[Inventory, Path, ClusterPKI], tmp_path: Path
) -> None:
    inventory, _state, _pki = cluster
    state = tmp_path / "state"
    before = ensure_pki(inventory, state, now=NOW)
    later = NOW + timedelta(days=100)
    after = ensure_pki(inventory, state, now=later, renew=renew_labels(inventory, state, ["all"]))
    for name, ca in before.cas.items():
        assert after.cas[name].cert_pem == ca.cert_pem
    assert after.sa_key_pem == before.sa_key_pem and after.sa_pub_pem == before.sa_pub_pem
    for n in cert_names(inventory, state, "cp1"):
        if n.name.endswith(".conf"):
            old = before.client("cp1", n.name).cert
            new = after.client("cp1", n.name).cert
        else:
            pki_name = n.label.split("/", 1)[1]
            old, new = before.leaf("cp1", pki_name).cert, after.leaf("cp1", pki_name).cert
        assert new.serial_number != old.serial_number, n.name
        assert new.subject == old.subject and new.issuer == old.issuer, n.name
        assert new.not_valid_after_utc == later + timedelta(seconds=inventory.cert_validity_seconds)
        for ext in (x509.SubjectAlternativeName, x509.ExtendedKeyUsage):
            try:
                assert new.extensions.get_extension_for_class(ext).value == (
                    old.extensions.get_extension_for_class(ext).value
                ), n.name
            except x509.ExtensionNotFound:
                continue
        assert new.public_key() != old.public_key(), f"{n.name}: a renewal brings a new key"
    # Only the named certificate moves.
    again = ensure_pki(inventory, state, now=later, renew=["cp2/etcd/server"])
    assert again.leaf("cp2", "etcd/server").cert_pem != after.leaf("cp2", "etcd/server").cert_pem
    assert again.leaf("cp1", "etcd/server").cert_pem == after.leaf("cp1", "etcd/server").cert_pem
    assert again.leaf("cp2", "etcd/peer").cert_pem == after.leaf("cp2", "etcd/peer").cert_pem


# --- upgrade rules ---------------------------------------------------------------------------


def test_upgrade_one_minor_with_kubeadms_etcd() -> None:
    plan = plan_upgrade("v1.33.5", "v1.34.1", cluster_etcd="3.5.21")
    assert (plan.kubernetes_from, plan.kubernetes_to) == ("v1.33.5", "v1.34.1")
    assert plan.etcd_to == "3.6.5"  # kubeadm v1.34.4's etcd for 1.34
    # 1.36 -> 1.37 moves etcd 3.6 -> 3.7.0 (kubeadm v1.37.2) from a 3.6.11+ member.
    plan = plan_upgrade("v1.36.3", "v1.37.2", cluster_etcd="3.6.16")
    assert (plan.etcd_from, plan.etcd_to) == ("3.6.16", "3.7.0")
    assert plan_upgrade("v1.36.3", "v1.37.2", cluster_etcd="3.6.11").etcd_to == "3.7.0"
    # A patch-only step inside 3.6, as the 3.7 refusal's hint proposes.
    assert plan_upgrade("v1.36.3", "v1.36.3", cluster_etcd="3.6.8",
                        pinned_etcd="3.6.11").etcd_to == "3.6.11"
    assert plan_upgrade("1.33.5", "1.34.1", cluster_etcd="3.5.1", pinned_etcd="3.5.1").etcd_to == (
        "3.5.1"
    )
    # A patch upgrade keeps the running etcd; an equal version plans nothing.
    assert plan_upgrade("v1.34.1", "v1.34.3", cluster_etcd="3.6.5").etcd_to == "3.6.5"
    assert not plan_upgrade("v1.34.1", "v1.34.1", cluster_etcd="3.6.4").changes_anything
    # kubeadm never moves etcd down: a newer pinned etcd stays.
    assert plan_upgrade("v1.33.1", "v1.34.0", cluster_etcd="3.6.9").etcd_to == "3.6.9"


@pytest.mark.parametrize(
    ("have", "want", "etcd", "pinned", "words"),
    [
        ("v1.33.5", "v1.35.0", "3.5.21", None, "cannot skip minor versions"),
        ("v1.34.1", "v1.33.5", "3.6.4", None, "downgrades are not supported"),
        ("v1.34.2", "v1.34.1", "3.6.4", None, "downgrades are not supported"),
        ("v1.34.1", "v2.0.0", "3.6.4", None, "across major versions"),
        ("v1.37.1", "v1.38.0", "3.7.0", None,
         "Kubernetes v1.38 is newer than this version of bootstrap knows; the newest "
         "supported is v1.37"),
        # etcd: never down (a patch either), one minor at a time, from 3.6.11+ to 3.7,
        # never with a control plane older than kubeadm pairs it with.
        ("v1.36.3", "v1.37.2", "3.6.16", "3.6.12", "bootstrap does not downgrade etcd"),
        ("v1.37.2", "v1.37.2", "3.7.1", "3.7.0", "bootstrap does not downgrade etcd"),
        ("v1.36.3", "v1.37.2", "3.5.24", None, "etcd upgrades one minor at a time"),
        ("v1.35.4", "v1.36.3", "3.5.24", "3.7.0", "etcd upgrades one minor at a time"),
        ("v1.36.3", "v1.37.2", "3.6.8", None, "needs every 3.6 member at 3.6.11 or later"),
        ("v1.36.3", "v1.37.2", "3.6.10", "3.7.4", "needs every 3.6 member at 3.6.11"),
        ("v1.31.4", "v1.32.4", "3.5.24", "3.6.16",
         "etcd 3.6 needs a control plane of v1.33 or newer"),
        ("v1.33.5", "v1.33.5", "3.6.16", "3.7.0",
         "etcd 3.7 needs a control plane of v1.34 or newer"),
        ("v1.33.5", "v1.34.1", "3.6.4", "3.5.21", "older minor than the cluster's etcd"),
        ("v1.33.5", "latest", "3.5.21", None, "not a version"),
    ],
)
def test_upgrade_refusals_exit_2(
    have: str, want: str, etcd: str, pinned: str | None, words: str
) -> None:
    with pytest.raises(UsageError) as err:
        plan_upgrade(have, want, cluster_etcd=etcd, pinned_etcd=pinned)
    assert words in err.value.message
    assert err.value.exit_code == 2


def test_skip_hint_names_the_next_minor() -> None:
    with pytest.raises(UsageError) as err:
        plan_upgrade("v1.32.0", "v1.34.1", cluster_etcd="3.5.16")
    assert err.value.hint == "upgrade one minor at a time: first --to v1.33.x"


def test_etcd_refusal_hints_name_the_step_first() -> None:
    with pytest.raises(UsageError) as err:
        plan_upgrade("v1.36.3", "v1.37.2", cluster_etcd="3.6.8")
    assert err.value.hint == (
        "first move etcd within 3.6: --to v1.36.3 --etcd-version 3.6.11 "
        "(or a newer 3.6 patch)"
    )
    with pytest.raises(UsageError) as err:
        plan_upgrade("v1.36.3", "v1.37.2", cluster_etcd="3.5.24")
    assert err.value.hint == (
        "first --to v1.36.3 --etcd-version 3.6.x (the newest patch of that minor)"
    )
    with pytest.raises(UsageError) as err:
        plan_upgrade("v1.37.2", "v1.38.1", cluster_etcd="3.7.0")
    assert err.value.hint == "the newest this bootstrap can upgrade to is v1.37.x"


def test_versions_read_from_manifests() -> None:
    manifest = b"spec:\n  containers:\n  - name: etcd\n    image: my.registry:5000/etcd:3.5.21-0\n"
    assert image_tag(manifest) == "3.5.21-0"
    assert image_tag(b"spec:\n  containers:\n  - image: my.registry:5000/etcd\n") is None
    assert image_tag(b": not yaml [") is None
    lowest, highest, etcd = cluster_versions(
        {"a": ("v1.34.1", "3.6.4"), "b": ("v1.33.5", "3.5.21"), "c": ("v1.33.5", "3.5.21")}
    )
    assert (lowest, highest, etcd) == ("v1.33.5", "v1.34.1", "3.5.21")
    with pytest.raises(UsageError):
        cluster_versions({"a": ("v1.34.1", "3.6.4"), "b": (None, None)})


# --- snapshots kept ------------------------------------------------------------------------


def test_prune_keeps_the_newest(tmp_path: Path) -> None:
    names = [snapshot_name("lab", 1_700_000_000 + i) for i in range(7)]
    for i, name in enumerate(names):
        (tmp_path / name).write_bytes(b"x")
        os.utime(tmp_path / name, ns=(i * 10**9, i * 10**9))
    (tmp_path / "unrelated.db").write_bytes(b"keep me")
    deleted = prune(tmp_path, 5)
    assert [p.name for p in deleted] == names[:2]
    assert [p.name for p in kept_snapshots(tmp_path)] == names[2:]
    assert (tmp_path / "unrelated.db").exists()
    assert names[0] == "etcd-lab-20231114T221320Z.db"


def test_same_second_snapshots_sort_by_time(tmp_path: Path) -> None:
    base = snapshot_name("lab", 1_700_000_000)
    second = base.replace(".db", "-1.db")
    for i, name in enumerate((base, second)):
        (tmp_path / name).write_bytes(b"x")
        os.utime(tmp_path / name, ns=(i * 10**9, i * 10**9))
    assert [p.name for p in prune(tmp_path, 1)] == [base]


def test_db_copies_count_as_kept_snapshots(tmp_path: Path) -> None:
    copy = snapshot_name("lab", 1_700_000_000).replace(".db", "-db-copy.db")
    (tmp_path / copy).write_bytes(b"x")
    (tmp_path / "etcd-lab-notes.db").write_bytes(b"x")
    assert [p.name for p in kept_snapshots(tmp_path)] == [copy]


def _upgrade_diff(have: tuple[str, str], target: str, pinned: str | None = None) -> str:
    """What `upgrade --dry-run` prints for cp1's etcd and kube-apiserver manifests: the
    versions plan_upgrade picks, rendered, diffed against the running ones (push's diff)."""
    import dataclasses as dc

    from bootstrap.manifests.render import render_manifests
    from bootstrap.transport.push import manifest_diff
    from tests.render_support import example_inventory_137, fake_mounted_files, full_cluster

    plan = plan_upgrade(have[0], target, cluster_etcd=have[1], pinned_etcd=pinned)
    running = example_inventory_137(kubernetes_version=have[0], etcd_version=have[1])
    wanted = dc.replace(running, kubernetes_version=plan.kubernetes_to, etcd_version=plan.etcd_to)
    out = []
    for component in ("etcd", "kube-apiserver"):
        path = f"/etc/kubernetes/manifests/{component}.yaml"
        old, new = (
            render_manifests(inv, inv.masters[0], fake_mounted_files(inv, inv.masters[0]),
                             full_cluster(inv))[path]
            for inv in (running, wanted)
        )
        out.append(manifest_diff(old.content, new))
    return "".join(out)


def test_dry_run_diff_136_to_137_is_the_images() -> None:
    diff = _upgrade_diff(("v1.36.3", "3.6.16"), "v1.37.2")
    assert "-    image: registry.k8s.io/etcd:3.6.16-0\n" in diff
    assert "+    image: registry.k8s.io/etcd:3.7.0-0\n" in diff
    assert "-    image: registry.k8s.io/kube-apiserver:v1.36.3\n" in diff
    assert "+    image: registry.k8s.io/kube-apiserver:v1.37.2\n" in diff
    changed = [ln for ln in diff.splitlines() if ln[:1] in "+-" and ln[:3] not in ("+++", "---")]
    # Nothing but the images and the config digest (which covers them) moves: kubeadm
    # v1.37.2 renders flags, probes and volumes as v1.36.3 does.
    assert all("image:" in ln or "config-digest" in ln for ln in changed), changed
    assert "experimental" not in diff


def test_dry_run_diff_shows_the_etcd_flag_forms_changing() -> None:
    diff = _upgrade_diff(("v1.33.5", "3.5.24"), "v1.34.4")
    assert "-    - --experimental-initial-corrupt-check=true\n" in diff
    assert "+    - --feature-gates=InitialCorruptCheck=true\n" in diff
    assert "-    - --experimental-watch-progress-notify-interval=5s\n" in diff
    assert "+    - --watch-progress-notify-interval=5s\n" in diff
    assert "+    image: registry.k8s.io/etcd:3.6.5-0\n" in diff
