"""The kubelet's second static-pod source for real: `init --delivery http` on a fresh
kubelet-mode lab (`lab up --node kubelet`), every pod from the kubelet's staticPodURL.

Each kubelet is pointed at its node's URL as docs/http-source.md tells an operator of a
real node: a KubeletConfiguration drop-in (``/var/lib/kubelet/config.d/``, the kubelet's
``--config-dir``) with ``staticPodURL`` + ``staticPodURLHeader``, then a kubelet restart
(lab/node.py restarts it when a drop-in changes), and the cluster CA in the kubelet's
trust store (lab/node.py: ``SSL_CERT_FILE``, rebuilt when /etc/kubernetes/pki/ca.crt
appears). No manifest file is ever written: the mirror pods say ``config.source: http``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap.workflow import delivery
from lab import api, config
from lab.api import LabInfo
from lab.config import LAB_BOOTSTRAP_STATE
from tests.lab_support import COMPONENTS, REPO, Cluster, bootstrap, bring_up, poll

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def kubelet_lab(request: pytest.FixtureRequest) -> Iterator[LabInfo]:
    yield bring_up(request, node="kubelet")


def test_init_delivery_http_runs_every_pod_from_the_manifest_url(
    kubelet_lab: LabInfo, tmp_path: Path
) -> None:
    state = LAB_BOOTSTRAP_STATE
    if state.exists():  # a previous lab's CA: this lab's hosts are new
        subprocess.run(["rm", "-rf", "--", str(state)], check=True)
    cluster = Cluster(kubelet_lab, state)
    hosts = [h.name for h in kubelet_lab.hosts]
    bridge = str(config.plan(1).bridge_address)  # the operator's side of the lab bridge
    with socket.socket() as s:
        s.bind((bridge, 0))
        port = int(s.getsockname()[1])
    url = f"https://{bridge}:{port}"
    with open(tmp_path / "serve.log", "w") as err:
        serve = subprocess.Popen(
            [sys.executable, "-m", "bootstrap", "serve", "--inventory",
             str(kubelet_lab.inventory), "--state-dir", str(state), "--listen",
             f"{bridge}:{port}"], stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO,
        )
    try:
        assert serve.stdout is not None
        line = serve.stdout.readline()
        assert line.startswith(f"serving {url}"), line
        tokens = delivery.load_tokens(state)
        for host in hosts:
            dropin = (
                "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
                f"staticPodURL: {delivery.node_url(url, host)}\n"
                f'staticPodURLHeader:\n  Authorization:\n  - "Bearer {tokens[host]}"\n'
                "httpCheckFrequency: 5s\n"
            )
            wrote = api.exec_in(host, ["sh", "-c", "umask 077; cat > "
                                       "/var/lib/kubelet/config.d/50-manifest-url.conf"],
                                input=dropin.encode())
            assert wrote.returncode == 0, wrote.stderr
        first = bootstrap("init", "--inventory", str(kubelet_lab.inventory), "--state-dir",
                          str(state), "--delivery", "http", "--serve-url", url)
        print(first.stdout, first.stderr)
        assert first.returncode == 0, first.stderr[-3000:]
        for host in hosts:  # nothing in the manifests dir: the URL defines every pod
            ls = api.exec_in(host, ["ls", "-A", "/etc/kubernetes/manifests"])
            assert ls.stdout.decode().split() == [], (host, ls.stdout)
            for component in COMPONENTS:
                assert cluster.running(host, component) is not None, (host, component)
        expected = {f"{c}-{h}" for c in COMPONENTS for h in hosts}
        pods = poll(
            "12 mirror pods from the http source, Running",
            cluster.mirror_pods,
            lambda p: set(p) == expected and all(
                x["metadata"]["annotations"].get("kubernetes.io/config.source") == "http"
                and x["status"].get("phase") == "Running" for x in p.values()),
            180,
        )
        assert len(pods) == 12
        fetched = json.loads((state / "served" / "m1.fetched.json").read_text())
        assert fetched, "the server recorded m1's kubelet fetching its document"
        again = bootstrap("init", "--inventory", str(kubelet_lab.inventory), "--state-dir",
                          str(state), "--delivery", "http", "--serve-url", url)
        assert again.returncode == 0 and "init: 0 changed" in again.stdout, again.stderr
    finally:
        serve.terminate()
        serve.wait(timeout=30)
        if serve.stdout is not None:
            serve.stdout.close()
