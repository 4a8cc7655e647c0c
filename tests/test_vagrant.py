"""Static checks of the Vagrant lab (vagrant/). No VM runs here: the development machines
and CI have no virtualization. What runs for real: ruby's parser, shellcheck, `vagrant
validate` (when Debian's vagrant is installed), the project's inventory loader, the
kubelet-start wrapper's flag choice (with a stand-in for the kubelet binary, which is not
installable here), and known_hosts.py against a real OpenSSH sshd on loopback.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

# Make the checkout importable however pytest is run (as tests/test_runner.py does).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bootstrap.inventory import load
from tests.sshd_support import Sshd, keygen, start_sshd

ROOT = Path(__file__).resolve().parent.parent
VAGRANT = ROOT / "vagrant"
VAGRANTFILE = VAGRANT / "Vagrantfile"
INVENTORY = VAGRANT / "masters.yaml"
PROVISION = VAGRANT / "provision" / "master.sh"
FILES = VAGRANT / "files"
WRAPPER = FILES / "kubelet-start.sh"


def _vagrantfile_masters() -> list[tuple[str, str]]:
    text = VAGRANTFILE.read_text()
    found = re.findall(r'\{\s*name:\s*"([^"]+)",\s*ip:\s*"([^"]+)"\s*\}', text)
    assert found, "no `{ name: ..., ip: ... }` entries in the Vagrantfile"
    return found


def _default(pattern: str, text: str, where: str) -> str:
    match = re.search(pattern, text)
    assert match, f"no KUBERNETES_MINOR default in {where}"
    return match.group(1)


def _load_yaml(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict)
    return doc


# --- syntax and lint ---------------------------------------------------------------


def test_vagrantfile_parses_with_ruby() -> None:
    done = subprocess.run(["ruby", "-c", str(VAGRANTFILE)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Syntax OK" in done.stdout


def test_every_shell_script_is_shellcheck_clean() -> None:
    scripts = sorted(VAGRANT.rglob("*.sh"))
    assert PROVISION in scripts and WRAPPER in scripts
    done = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_vagrant_validate() -> None:
    if shutil.which("vagrant") is None:
        pytest.skip("no `vagrant` binary (Debian 12: apt-get install vagrant vagrant-libvirt)")
    done = subprocess.run(
        ["vagrant", "validate"],
        cwd=VAGRANT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "VAGRANT_CHECKPOINT_DISABLE": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "validated successfully" in done.stdout


# --- kubelet configuration -----------------------------------------------------------


def test_kubelet_config_has_static_pod_path_and_auth() -> None:
    config = _load_yaml(FILES / "kubelet-config.yaml")
    assert config["apiVersion"] == "kubelet.config.k8s.io/v1beta1"
    assert config["kind"] == "KubeletConfiguration"
    assert config["staticPodPath"] == "/etc/kubernetes/manifests"
    assert config["cgroupDriver"] == "systemd"
    assert config["containerRuntimeEndpoint"] == "unix:///run/containerd/containerd.sock"
    auth = config["authentication"]
    assert auth["x509"]["clientCAFile"] == "/etc/kubernetes/pki/ca.crt"
    assert auth["webhook"]["enabled"] is True
    assert auth["anonymous"]["enabled"] is False
    assert config["authorization"]["mode"] == "Webhook"
    assert config["readOnlyPort"] == 0


def test_standalone_config_differs_only_in_auth() -> None:
    full = _load_yaml(FILES / "kubelet-config.yaml")
    standalone = _load_yaml(FILES / "kubelet-config-standalone.yaml")
    auth_keys = {"authentication", "authorization"}
    assert {k: v for k, v in full.items() if k not in auth_keys} == {
        k: v for k, v in standalone.items() if k not in auth_keys
    }
    # Without an API client the kubelet refuses webhook authn/authz, and a clientCAFile
    # that does not exist yet would stop it too.
    auth = standalone["authentication"]
    assert auth["webhook"]["enabled"] is False
    assert auth["anonymous"]["enabled"] is False
    assert not auth.get("x509", {}).get("clientCAFile")
    assert standalone["authorization"]["mode"] == "AlwaysAllow"


def test_kubelet_dns_matches_inventory() -> None:
    inventory = load(INVENTORY)
    config = _load_yaml(FILES / "kubelet-config.yaml")
    tenth = inventory.service_subnet.network_address + 10
    assert config["clusterDNS"] == [str(tenth)]
    assert config["clusterDomain"] == inventory.dns_domain


def test_systemd_drop_in_replaces_exec_start_with_the_wrapper() -> None:
    lines = [ln.strip() for ln in (FILES / "10-bootstrap.conf").read_text().splitlines()]
    exec_lines = [ln for ln in lines if ln.startswith("ExecStart=")]
    # An empty ExecStart= first clears the packaged one (systemd refuses two otherwise).
    assert exec_lines == [
        "ExecStart=",
        "ExecStart=/usr/local/bin/kubelet-start $KUBELET_EXTRA_ARGS",
    ]
    path_unit = (FILES / "kubelet-kubeconfig.path").read_text()
    assert "PathChanged=/etc/kubernetes/kubelet.conf" in path_unit
    assert "PathChanged=/etc/kubernetes/pki/ca.crt" in path_unit
    assert "Unit=kubelet-kubeconfig.service" in path_unit
    provision = PROVISION.read_text()
    for name in [
        "kubelet-config.yaml",
        "kubelet-config-standalone.yaml",
        "kubelet-start.sh",
        "10-bootstrap.conf",
        "kubelet-kubeconfig.path",
        "kubelet-kubeconfig.service",
        "crictl.yaml",
    ]:
        assert f'"$FILES/{name}"' in provision, f"master.sh does not install {name}"
    assert "install -d -m 0700 /etc/kubernetes/manifests" in provision
    assert "SystemdCgroup = true" in provision
    assert "apt-mark hold kubelet kubectl cri-tools" in provision
    assert '"$FILES/containerd.service"' in provision


# --- container runtime and cgroups (Kubernetes 1.36+) -----------------------------------


def _shell_default(name: str) -> str:
    return _default(rf'{name}="\$\{{{name}:-([^}}]+)\}}"', PROVISION.read_text(), "master.sh")


def test_containerd_is_2_2_or_newer_from_verified_upstream_releases() -> None:
    """Debian 12's containerd is 1.6, which Kubernetes 1.36+ does not support (2.2+ is):
    the VMs get containerd and runc from their release files, checksums verified."""
    text = PROVISION.read_text()
    major, minor, _patch = (int(x) for x in _shell_default("CONTAINERD_VERSION").split("."))
    assert (major, minor) >= (2, 2)
    assert re.fullmatch(r"\d+\.\d+\.\d+", _shell_default("RUNC_VERSION"))
    install = re.search(r"^install_containerd\(\) \{\n(.*?)^\}", text, re.M | re.S)
    assert install, "no install_containerd() in master.sh"
    body = install.group(1)
    # Not from Debian: no apt install of containerd/runc, and Debian's are removed.
    for line in body.splitlines():
        if "apt-get install" in line:
            assert "containerd" not in line and "runc" not in line, line
    assert "apt-get purge -y -q containerd runc" in body
    assert "sha256sum -c" in text and body.count("fetch_verified ") == 2
    assert "containerd-$CONTAINERD_VERSION-linux-amd64.tar.gz.sha256sum" in body
    assert "runc.sha256sum" in body
    # containerd 2.x config (version 3): the pause image key is `sandbox`.
    assert "sandbox_image" not in body and "sandbox = '$PAUSE_IMAGE'" in body
    assert _shell_default("PAUSE_IMAGE") == "registry.k8s.io/pause:3.10.2"  # kubeadm v1.37


def test_the_check_refuses_a_too_old_containerd_version() -> None:
    script = 'v="$2"; source "$1" 192.168.56.11; CONTAINERD_VERSION="$v"; check_inputs'
    env = {"PATH": "/usr/bin:/bin", "FILES": str(FILES)}
    for version, ok in (("1.7.24", False), ("2.1.4", False), ("2.2.0", True), ("2.3.4", True)):
        done = subprocess.run(
            ["bash", "-c", script, "t", str(PROVISION), version],
            capture_output=True, text=True, env=env,
        )
        assert (done.returncode == 0) == ok, (version, done.stderr)
        if not ok:
            assert "must be 2.2.0 or newer" in done.stderr


def test_cgroup_v2_is_required_and_kubelet_keeps_refusing_v1() -> None:
    """Kubelet 1.35+ refuses cgroup v1 unless failCgroupV1: false: we keep it refusing
    and provisioning checks the VM runs cgroup v2 before installing anything."""
    for name in ("kubelet-config.yaml", "kubelet-config-standalone.yaml"):
        assert _load_yaml(FILES / name)["failCgroupV1"] is True
    text = PROVISION.read_text()
    assert "/sys/fs/cgroup/cgroup.controllers" in text
    main = re.search(r"^main\(\) \{\n(.*?)^\}", text, re.M | re.S)
    assert main
    steps = main.group(1).split()
    assert steps.index("require_cgroup_v2") < steps.index("install_containerd")


# --- the wrapper that chooses standalone or registered mode ------------------------------


def _run_wrapper(tmp_path: Path, *, kubeconfig: bytes | None, ca: bytes | None) -> list[str]:
    """Run kubelet-start with a stand-in kubelet that prints its argv, one per line."""
    fake = tmp_path / "kubelet"
    fake.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    fake.chmod(0o755)
    conf, ca_file = tmp_path / "kubelet.conf", tmp_path / "ca.crt"
    for path, data in ((conf, kubeconfig), (ca_file, ca)):
        path.unlink(missing_ok=True)
        if data is not None:
            path.write_bytes(data)
    env = {
        "PATH": "/usr/bin:/bin",
        "KUBELET_BIN": str(fake),
        "KUBELET_KUBECONFIG": str(conf),
        "KUBELET_CLIENT_CA": str(ca_file),
        "KUBELET_CONFIG_DIR": "/var/lib/kubelet",
    }
    done = subprocess.run(
        ["bash", str(WRAPPER), "--node-ip=192.168.56.11"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_wrapper_runs_standalone_until_kubeconfig_and_ca_exist(tmp_path: Path) -> None:
    standalone = ["--config=/var/lib/kubelet/config-standalone.yaml", "--node-ip=192.168.56.11"]
    assert _run_wrapper(tmp_path, kubeconfig=None, ca=None) == standalone
    assert _run_wrapper(tmp_path, kubeconfig=b"apiVersion: v1\n", ca=None) == standalone
    assert _run_wrapper(tmp_path, kubeconfig=None, ca=b"PEM\n") == standalone
    assert _run_wrapper(tmp_path, kubeconfig=b"", ca=b"PEM\n") == standalone  # half written


def test_wrapper_registers_once_kubeconfig_and_ca_exist(tmp_path: Path) -> None:
    argv = _run_wrapper(tmp_path, kubeconfig=b"apiVersion: v1\n", ca=b"PEM\n")
    assert argv == [
        "--config=/var/lib/kubelet/config.yaml",
        f"--kubeconfig={tmp_path / 'kubelet.conf'}",
        "--node-ip=192.168.56.11",
    ]


# --- inventory against the Vagrantfile and the provisioning -----------------------------


def test_inventory_loads_and_matches_the_vagrantfile() -> None:
    inventory = load(INVENTORY)
    assert inventory.cluster_name == "vagrant"
    assert [(m.name, str(m.address)) for m in inventory.masters] == _vagrantfile_masters()
    assert inventory.control_plane_endpoint == f"{inventory.masters[0].address}:6443"
    assert inventory.etcd_semver == (3, 7, 0)  # kubeadm v1.37.2's etcd
    assert inventory.kubernetes_minor == (1, 37)
    for master in inventory.masters:
        assert master.ssh.user == "vagrant"
        assert master.ssh.sudo is True
        assert master.ssh.host_key_policy == "strict"
        assert master.ssh.port == 22
        assert master.ssh.identity_file == VAGRANT / ".vagrant-ssh" / f"{master.name}.key"
        assert master.ssh.known_hosts == VAGRANT / ".vagrant-ssh" / "known_hosts"
    for master in _vagrantfile_masters():
        assert ipaddress.ip_address(master[1]) in ipaddress.ip_network("192.168.56.0/21")


def _vagrantfile_constants() -> dict[str, str]:
    """The Vagrantfile evaluated by Ruby (Vagrant.configure stubbed): its version constants."""
    script = (
        "module Vagrant; def self.configure(*); end; end\n"
        f"load {str(VAGRANTFILE)!r}\n"
        'puts "KUBERNETES_MINOR=#{KUBERNETES_MINOR}"\n'
        'puts "KUBERNETES_VERSION=#{KUBERNETES_VERSION}"\n'
        'puts "IMAGES=#{CONTROL_PLANE_IMAGES.join(" ")}"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    out = subprocess.run(
        ["ruby", "-e", script], cwd=VAGRANT, env=env, capture_output=True, text=True, check=True
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


@pytest.mark.skipif(shutil.which("ruby") is None, reason="ruby not installed (.ci/run installs it)")
def test_vagrantfile_takes_versions_and_images_from_the_inventory() -> None:
    from bootstrap.manifests.components import etcd_image

    inventory = load(INVENTORY)
    constants = _vagrantfile_constants()
    major, minor = inventory.kubernetes_minor
    assert constants["KUBERNETES_MINOR"] == f"v{major}.{minor}"
    assert constants["KUBERNETES_VERSION"] == inventory.kubernetes_version
    repo = inventory.image_repository
    assert constants["IMAGES"].split() == [
        f"{repo}/kube-apiserver:{inventory.kubernetes_version}",
        f"{repo}/kube-controller-manager:{inventory.kubernetes_version}",
        f"{repo}/kube-scheduler:{inventory.kubernetes_version}",
        etcd_image(inventory),
    ]


# `apt-cache madison kubelet` as pkgs.k8s.io answers it (newest first).
MADISON = """\
   kubelet | 1.34.10-1.1 | https://pkgs.k8s.io/core:/stable:/v1.34/deb  Packages
   kubelet | 1.34.2-1.1 | https://pkgs.k8s.io/core:/stable:/v1.34/deb  Packages
   kubelet | 1.34.1-1.2 | https://pkgs.k8s.io/core:/stable:/v1.34/deb  Packages
   kubelet | 1.34.1-1.1 | https://pkgs.k8s.io/core:/stable:/v1.34/deb  Packages
   kubelet | 1.34.0-1.1 | https://pkgs.k8s.io/core:/stable:/v1.34/deb  Packages
"""


@pytest.mark.parametrize(
    ("release", "expected"),
    [("v1.34.1", "1.34.1-1.2"), ("v1.34.10", "1.34.10-1.1"), ("v1.34.0", "1.34.0-1.1"),
     ("v1.34.3", "")],
)
def test_pick_release_takes_the_exact_patch(release: str, expected: str) -> None:
    out = subprocess.run(
        ["bash", "-c", 'source "$1" && pick_release "$2"', "test", str(PROVISION), release],
        input=MADISON, capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == expected
    assert out.stderr == ""


def test_provisioning_pins_the_kubelet_and_pulls_the_images() -> None:
    text = PROVISION.read_text()
    assert '"kubelet$pin" "kubectl$pin"' in text
    assert 'crictl pull "$image"' in text
    vagrantfile = VAGRANTFILE.read_text()
    assert '"KUBERNETES_VERSION" => KUBERNETES_VERSION' in vagrantfile
    assert '"IMAGES" => CONTROL_PLANE_IMAGES.join(" ")' in vagrantfile


def test_package_minor_matches_inventory() -> None:
    major, minor = load(INVENTORY).kubernetes_minor
    wanted = f"v{major}.{minor}"
    assert (
        _default(
            r'KUBERNETES_MINOR="\$\{KUBERNETES_MINOR:-([^}]+)\}"',
            PROVISION.read_text(),
            "master.sh",
        )
        == wanted
    )


def test_vagrantfile_sizes_and_providers() -> None:
    text = VAGRANTFILE.read_text()
    assert re.search(r"^CPUS = 2$", text, re.M)
    assert re.search(r"^MEMORY_MIB = 2048$", text, re.M)
    assert 'config.vm.provider "virtualbox"' in text
    assert 'config.vm.provider "libvirt"' in text
    assert "node.vm.hostname = master[:name]" in text


# --- known_hosts.py ----------------------------------------------------------------------


def _helper() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vagrant_known_hosts", VAGRANT / "known_hosts.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through it
    spec.loader.exec_module(module)
    return module


SSH_CONFIG_SAMPLE = """\
Host m1
  HostName 127.0.0.1
  User vagrant
  Port 2222
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  IdentityFile "/home/u/lab dir/.vagrant/machines/m1/virtualbox/private_key"
  IdentitiesOnly yes

Host m2
  HostName 192.168.121.7
  Port 22
  IdentityFile /home/u/.vagrant/machines/m2/libvirt/private_key
  IdentityFile /home/u/.vagrant.d/insecure_private_key
"""


def test_parse_ssh_config() -> None:
    hosts = _helper().parse_ssh_config(SSH_CONFIG_SAMPLE)
    assert set(hosts) == {"m1", "m2"}
    assert hosts["m1"]["identityfile"] == [
        "/home/u/lab dir/.vagrant/machines/m1/virtualbox/private_key"
    ]
    assert hosts["m1"]["port"] == ["2222"]
    assert hosts["m2"]["identityfile"][1] == "/home/u/.vagrant.d/insecure_private_key"


def test_merge_known_hosts_replaces_only_our_hosts() -> None:
    merged = _helper().merge_known_hosts(
        "# mine\nother.example ssh-ed25519 AAAA1\n192.168.56.11 ssh-ed25519 OLD\n",
        {"192.168.56.11": "192.168.56.11 ssh-ed25519 NEW"},
    )
    assert merged == ("# mine\nother.example ssh-ed25519 AAAA1\n192.168.56.11 ssh-ed25519 NEW\n")


def test_helper_reads_the_inventory_paths() -> None:
    targets = _helper().targets_from_inventory(INVENTORY)
    assert [(t.name, t.address, t.port) for t in targets] == [
        (name, ip, 22) for name, ip in _vagrantfile_masters()
    ]
    assert {t.known_hosts for t in targets} == {VAGRANT / ".vagrant-ssh" / "known_hosts"}


@pytest.fixture
def sshd() -> Any:
    server = start_sshd()
    try:
        yield server
    finally:
        server.cleanup()


def _lab_for_helper(tmp_path: Path, server: Sshd) -> tuple[Path, Path]:
    """An inventory and an ssh-config (as `vagrant ssh-config` writes it) for one master
    served by the loopback sshd. Returns (inventory, ssh-config)."""
    client_key = server.new_client_key("m1")
    server.authorize("root", client_key.with_suffix(".pub"))
    inventory = tmp_path / "masters.yaml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "ssh": {"user": "root", "port": server.port, "knownHosts": "out/known_hosts"},
                "masters": [
                    {
                        "name": "m1",
                        "address": "127.0.0.1",
                        "ssh": {"identityFile": "out/m1.key"},
                    }
                ],
            }
        )
    )
    config = tmp_path / "ssh-config"
    config.write_text(
        f"Host m1\n  HostName 127.0.0.1\n  User root\n  Port {server.port}\n"
        "  UserKnownHostsFile /dev/null\n  StrictHostKeyChecking no\n"
        f'  IdentityFile "{client_key}"\n  IdentitiesOnly yes\n  LogLevel FATAL\n'
    )
    return inventory, config


def test_helper_records_the_host_key_seen_both_ways(tmp_path: Path, sshd: Sshd) -> None:
    inventory, config = _lab_for_helper(tmp_path, sshd)
    known_hosts = tmp_path / "out" / "known_hosts"
    known_hosts.parent.mkdir(mode=0o700)
    known_hosts.write_text("keep.example ssh-ed25519 AAAAkeep\n")
    status = _helper().main(
        [
            "--inventory", str(inventory),
            "--ssh-config", str(config),
            "--host-key-path", str(sshd.host_key.with_suffix(".pub")),
        ]
    )  # fmt: skip
    assert status == 0
    assert known_hosts.read_text() == (
        "keep.example ssh-ed25519 AAAAkeep\n" + sshd.known_hosts_line()
    )
    copied = tmp_path / "out" / "m1.key"
    assert copied.read_bytes() == (sshd.root / "client" / "m1").read_bytes()
    assert stat.S_IMODE(copied.stat().st_mode) == 0o600
    # OpenSSH itself accepts the result with strict checking.
    done = subprocess.run(
        [
            "ssh", "-F", "/dev/null", "-p", str(sshd.port), "-i", str(copied),
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={known_hosts}", "root@127.0.0.1", "true",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_helper_refuses_a_key_the_vm_does_not_have(tmp_path: Path, sshd: Sshd) -> None:
    inventory, config = _lab_for_helper(tmp_path, sshd)
    other = keygen(tmp_path / "other_host_key")
    status = _helper().main(
        [
            "--inventory", str(inventory),
            "--ssh-config", str(config),
            "--host-key-path", str(other.with_suffix(".pub")),
        ]
    )  # fmt: skip
    assert status == 1
    assert not (tmp_path / "out" / "known_hosts").exists()


# --- what bootstrap writes lands where the kubelet looks --------------------------------


def test_inventory_check_command_accepts_masters_yaml() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bootstrap", "inventory", "check", str(INVENTORY)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 masters" in done.stdout
    assert load(INVENTORY).warnings == ()


def test_rendered_files_match_the_kubelet_setup(tmp_path: Path) -> None:
    """`bootstrap render` (offline) for masters.yaml: kubelet.conf and ca.crt sit where
    kubelet-start and the path unit look, the manifests in staticPodPath, and the node name
    in kubelet.conf is the VM's hostname (the kubelet registers under its hostname)."""
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable, "-m", "bootstrap", "render",
            "--inventory", str(INVENTORY),
            "--state-dir", str(tmp_path / "state"),
            "--out", str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    config = _load_yaml(FILES / "kubelet-config.yaml")
    wrapper = WRAPPER.read_text()
    for name, ip in _vagrantfile_masters():
        tree = out / name
        kubeconfig_path = "/etc/kubernetes/kubelet.conf"
        ca_path = config["authentication"]["x509"]["clientCAFile"]
        assert f"${{KUBELET_KUBECONFIG:-{kubeconfig_path}}}" in wrapper
        assert f"${{KUBELET_CLIENT_CA:-{ca_path}}}" in wrapper
        kubeconfig = _load_yaml(tree / kubeconfig_path.lstrip("/"))
        assert kubeconfig["users"][0]["name"] == f"system:node:{name}"
        assert kubeconfig["clusters"][0]["cluster"]["server"] == f"https://{ip}:6443"
        assert (tree / ca_path.lstrip("/")).is_file()
        manifests = sorted(p.name for p in (tree / config["staticPodPath"].lstrip("/")).iterdir())
        assert manifests == [
            "etcd.yaml",
            "kube-apiserver.yaml",
            "kube-controller-manager.yaml",
            "kube-scheduler.yaml",
        ]
