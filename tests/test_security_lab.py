"""Security checks on the namespace lab: the sudo path with a non-root user, file owners and
modes on the hosts (kubeadm's), no private key material in any output or log, and
known_hosts changed only with --accept-new-host-keys.

One lab for the module, in file order: the sudo init (first init of the cluster, so the
tool creates every file and the static pod dir itself), the output scan (wiped hosts, a
root init that writes everything again, with -v), then the known_hosts checks.

Run: LAB_INSTANCE=<d> .venv/bin/python -m pytest -m lab tests/test_security_lab.py
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import api
from lab.api import LabInfo
from tests.fault_support import (
    assert_no_traceback,
    bootstrap,
    desired_trees,
    host_sh,
    host_tree,
    inventory_copy,
    temp_leftovers,
    wipe_hosts,
)
from tests.lab_support import lab  # noqa: F401  (fixture)
from tests.secrets_support import leaked, secrets_of

pytestmark = pytest.mark.lab
HOST_LOGS = ("/var/log/lab-runner.log", "/var/log/sshd.log", "/var/log/pods")

# kubeadm's layout (reference/kubeadm.md): what every host must show after init.
DIR_MODES = {
    "/etc/kubernetes/pki": "755",
    "/etc/kubernetes/pki/etcd": "755",
    "/etc/kubernetes/manifests": "700",
    "/var/lib/etcd": "700",
}


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("security") / "state"


def expected_mode(path: str) -> int:
    name = path.rsplit("/", 1)[1]
    if name.endswith(".crt"):
        return 0o644
    return 0o600  # *.key, sa.pub, *.conf, manifests, encryption config


# --- the sudo path, and modes/owners as kubeadm ---------------------------------------------


def test_sudo_path_full_init_root_owned_kubeadm_modes(
    lab: LabInfo,  # noqa: F811
    state: Path,
    tmp_path: Path,
) -> None:
    # The tool creates the static pod dir itself here (a kubelet package usually ships
    # it; the lab does too, 0755): it must make it 0700 like kubeadm.
    for h in lab.hosts:
        host_sh(h.name, "rmdir /etc/kubernetes/manifests")
    inventory = inventory_copy(lab, tmp_path / "sudo.yaml", user="labadmin", sudo=True)
    proc = bootstrap(
        "-v", "init", "-i", str(inventory), "--state-dir", str(state)
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert_no_traceback(proc)
    assert "Sudo" in proc.stdout  # the preflight check ran (root through sudo)
    desired = desired_trees(lab.inventory, state)
    for h in lab.hosts:
        tree = host_tree(h.name)
        for path, spec in desired[h.name].items():
            meta, digest = tree[path]
            assert meta == f"f {spec.mode:o} 0:0", (h.name, path, meta)
            assert spec.mode == expected_mode(path), (path, oct(spec.mode))
            assert digest == spec.sha256, (h.name, path)
        for directory, mode in DIR_MODES.items():
            assert tree[directory][0] == f"d {mode} 0:0", (h.name, directory, tree[directory])
        # No staging copies of keys left in /tmp, no temp files beside targets.
        assert temp_leftovers(h.name) == []
        # (A checkout under /tmp is bound into the host's private /tmp: not ours to judge.)
        leftovers = host_sh(h.name, "ls -A /tmp").split()
        assert [e for e in leftovers if "bootstrap" in e] == [], leftovers
    assert leaked(proc.stdout + proc.stderr, secrets_of(state)) == []
    again = bootstrap(
        "init", "-i", str(inventory), "--state-dir", str(state)
    )
    assert again.returncode == 0 and "init: 0 changed" in again.stdout, again.stderr


# --- no private key material in any output or log -------------------------------------------


def test_no_private_key_material_in_outputs_or_logs(
    lab: LabInfo,  # noqa: F811
    state: Path,
    tmp_path: Path,
) -> None:
    wipe_hosts(lab)  # so init writes (and -v lists) every file again, keys included
    inv = str(lab.inventory)
    common = ["--state-dir", str(state)]
    pending = "rm -f /etc/kubernetes/pki/sa.key /etc/kubernetes/admin.conf"
    runs: list[tuple[list[str], str | None]] = [  # (argv, host script run before it)
        (["-v", "init", "-i", inv, *common], None),
        # A pending change on m1: plan shows it (secret files are never diffed), init
        # rewrites it with -v naming each file.
        (["-v", "plan", "-i", inv, *common], pending),
        (["-v", "init", "-i", inv, *common], None),
        (["-v", "init", "-i", inv, *common, "phase", "certs"], pending),
        (["-v", "verify", "-i", inv, *common], None),
        (["-v", "verify", "-i", inv, *common, "-o", "json"], None),
        (["-v", "status", "-i", inv, *common], None),
        (["-v", "status", "-i", inv, *common, "-o", "json"], None),
        (["-v", "render", "-i", inv, *common, "--out", str(tmp_path / "out")], None),
    ]
    outputs = []
    for argv, before in runs:
        if before:
            host_sh("m1", before)
        outputs.append(bootstrap(*argv))
    needles = secrets_of(state)
    for (argv, _), proc in zip(runs, outputs, strict=True):
        assert proc.returncode == 0, (argv, proc.stdout[-2000:], proc.stderr[-2000:])
        assert_no_traceback(proc)
        assert leaked(proc.stdout + proc.stderr, needles) == [], argv
    for index in (1, 2, 3):  # plan and -v named the secret file they showed/rewrote...
        assert "/etc/kubernetes/pki/sa.key" in outputs[index].stdout + outputs[index].stderr
    for h in lab.hosts:  # ...and the hosts' logs (runner, pods, sshd) hold no key either
        logs = host_sh(h.name, f"find {' '.join(HOST_LOGS)} -type f -exec cat {{}} + ; true")
        assert len(logs) > 1000, f"{h.name}: suspiciously little log text to scan"
        assert leaked(logs, needles) == [], h.name


# --- known_hosts only changes with --accept-new-host-keys --------------------------------------


def test_known_hosts_changed_only_with_accept_new(
    lab: LabInfo,  # noqa: F811
    state: Path,
    tmp_path: Path,
) -> None:
    address = lab.host("m2").address
    lines = lab.known_hosts.read_text().splitlines(keepends=True)
    m2_line = next(ln for ln in lines if address in ln.split()[0].split(","))
    known = tmp_path / "known_hosts"
    known.write_text("".join(ln for ln in lines if ln != m2_line))
    known.chmod(0o600)
    inventory = inventory_copy(lab, tmp_path / "inv.yaml", knownHosts=str(known))
    before = known.read_bytes()

    strict = bootstrap("plan", "-i", str(inventory), "--state-dir", str(state))
    assert strict.returncode == 1, strict.stderr
    assert_no_traceback(strict)
    assert f"m2: host key for {address} is not in {known}" in strict.stderr, strict.stderr
    assert "--accept-new-host-keys" in strict.stderr  # the hint
    assert known.read_bytes() == before

    # Strict init refuses too, before any write.
    refused = bootstrap(
        "init", "-i", str(inventory), "--state-dir", str(state)
    )
    assert refused.returncode == 1 and known.read_bytes() == before

    accepted = bootstrap(
        "plan", "-i", str(inventory), "--state-dir", str(state), "--accept-new-host-keys"
    )
    assert accepted.returncode == 0, accepted.stderr
    after = known.read_bytes()
    assert after.startswith(before), "existing lines must never be rewritten"
    added = after[len(before) :].decode().split()
    host_key = api.read_host_file("m2", "/etc/ssh/ssh_host_ed25519_key.pub").decode().split()
    assert added == [address, host_key[0], host_key[1]]

    # Known now: a strict run passes and leaves the file alone.
    again = bootstrap("plan", "-i", str(inventory), "--state-dir", str(state))
    assert again.returncode == 0, again.stderr
    assert known.read_bytes() == after
