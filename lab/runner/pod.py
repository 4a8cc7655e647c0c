"""Running one static pod: admission, image lookup, one supervised process per container.

Each container is a child process in its own process group (so SIGTERM/SIGKILL reach
anything it forks), started with a clean environment (PATH plus the manifest's `env` only:
etcd reads every ETCD_* variable as a flag), stdout+stderr appended to
`<logs>/<pod-name>.log` after a marker line per start. When `setpriv` exists the child
also gets a parent-death signal, so a runner killed with SIGKILL does not leave orphans
holding the pods' ports.

Restarts follow the kubelet's back-off: the n-th restart waits base * 2**(n-1) seconds,
capped (10 s .. 300 s by default); a container that ran at least `backoff_reset` seconds
before exiting starts again from the base. The restart policy is honoured (Always is the
static-pod default; OnFailure; Never).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any

from lab.runner.admission import AdmissionError, admit, binary_for_image
from lab.runner.manifests import PodManifest
from lab.runner.probes import ProbeConfigError, ProbeSet, ProbeSpec, container_probes

CLEAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
_SETPRIV = shutil.which("setpriv", path=CLEAN_PATH)


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Settings:
    bin_dir: str
    logs_dir: str
    backoff_base: float = 10.0
    backoff_cap: float = 300.0
    backoff_reset: float = 600.0
    probe_time_scale: float = 1.0
    stop_grace: float = 2.0


def exit_code_of(returncode: int) -> int:
    """Popen's -N for "killed by signal N" becomes the container runtime's 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def kill_group(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the process group, wait `grace`, then SIGKILL; always reaps."""
    if process.poll() is not None:
        _kill_leftovers(process.pid)
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    _kill_leftovers(process.pid)
    process.wait()


def _kill_leftovers(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class ContainerWorker(threading.Thread):
    """Supervise one container: start, watch, probe, restart with back-off, stop."""

    def __init__(
        self,
        pod_name: str,
        container: dict[str, Any],
        binary: str,
        probes: dict[str, ProbeSpec],
        restart_policy: str,
        grace: float,
        settings: Settings,
        predecessor: Pod | None,
        on_change: Any,
    ) -> None:
        super().__init__(name=f"container-{pod_name}-{container['name']}", daemon=True)
        self.pod_name = pod_name
        self.container = container
        self.binary = binary
        self.probe_specs = probes
        self.restart_policy = restart_policy
        self.grace = grace
        self.settings = settings
        self.predecessor = predecessor
        self.on_change = on_change
        self._stop_requested = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._kill_reason: str | None = None
        self._kill_message: str | None = None
        # Status fields (guarded by _lock).
        self.phase = "Pending"
        self.reason: str | None = None
        self.pid: int | None = None
        self.restart_count = 0
        self.last_exit_code: int | None = None
        self.last_termination_reason: str | None = None
        self.started_at: str | None = None
        self.backoff_seconds: float | None = None
        self.probe_set: ProbeSet | None = None

    # -- control from the runner thread ------------------------------------------------

    def request_stop(self) -> None:
        self._stop_requested.set()
        self._wake.set()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            probe_set = self.probe_set
            running = self.phase == "Running"
            data: dict[str, Any] = {
                "name": self.container["name"],
                "phase": self.phase,
                "reason": self.reason,
                "pid": self.pid,
                "restartCount": self.restart_count,
                "lastExitCode": self.last_exit_code,
                "lastTerminationReason": self.last_termination_reason,
                "startedAt": self.started_at,
                "backoffSeconds": self.backoff_seconds,
            }
        if probe_set is not None and running:
            results, error = probe_set.snapshot()
            data["probes"] = results
            data["lastProbeError"] = error
            data["ready"] = probe_set.ready()
        else:
            data["probes"] = {
                k: ("pending" if k in self.probe_specs else "none")
                for k in ("startup", "liveness", "readiness")
            }
            data["lastProbeError"] = None
            data["ready"] = False
        return data

    # -- the supervision loop ------------------------------------------------------------

    def run(self) -> None:
        if self.predecessor is not None:
            self._set(phase="Pending", reason="waiting for the previous instance to stop")
            self.predecessor.join()
            self.predecessor = None
        backoff = self.settings.backoff_base
        delay = 0.0
        first = True
        while not self._stop_requested.is_set():
            if delay > 0:
                self._set(phase="Waiting", reason="CrashLoopBackOff", pid=None,
                          backoff_seconds=delay)
                if self._stop_requested.wait(delay):
                    break
            if not first:
                with self._lock:
                    self.restart_count += 1
            first = False
            started = time.monotonic()
            returncode, reason = self._run_once()
            if returncode is None:  # stopped by request
                break
            ran_for = time.monotonic() - started
            if ran_for >= self.settings.backoff_reset:
                backoff = self.settings.backoff_base
            if not self._should_restart(returncode, reason):
                self._set(phase="Succeeded" if returncode == 0 else "Failed",
                          reason=reason, pid=None)
                self._stop_requested.wait()
                break
            delay = backoff
            backoff = min(backoff * 2, self.settings.backoff_cap)
        self._set(phase="Terminated", reason="stopped by the runner", pid=None)

    def _should_restart(self, exit_code: int, reason: str) -> bool:
        if self.restart_policy == "Never":
            return False
        if self.restart_policy == "OnFailure":
            return exit_code != 0 or reason.endswith("ProbeFailed")
        return True

    def _set(self, **fields: Any) -> None:
        with self._lock:
            for key, value in fields.items():
                setattr(self, key, value)
        self.on_change()

    def _argv(self) -> list[str]:
        command = [self.binary, *self.container["command"][1:]]
        command += list(self.container.get("args") or [])
        if _SETPRIV is not None:
            # The parent-death signal is tied to the forking thread; this thread lives
            # until it has reaped the child, so it fires only if the runner dies.
            command = [_SETPRIV, "--pdeathsig", "KILL", "--", *command]
        return command

    def _env(self) -> dict[str, str]:
        env = {"PATH": CLEAN_PATH}
        for item in self.container.get("env") or []:
            if "valueFrom" in item:
                continue  # no API server in the lab: nothing to resolve it from
            env[str(item["name"])] = str(item.get("value", ""))
        return env

    def _open_log(self) -> int:
        os.makedirs(self.settings.logs_dir, exist_ok=True)
        path = os.path.join(self.settings.logs_dir, f"{self.pod_name}.log")
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        marker = (
            f"==== {utc_now()} lab-runner: start container {self.container['name']} "
            f"(restart {self.restart_count}): {' '.join(self._argv())}\n"
        )
        os.write(fd, marker.encode())
        return fd

    def _on_probe_fatal(self, kind: str, message: str) -> None:
        with self._lock:
            if self._kill_reason is None:
                self._kill_reason = "LivenessProbeFailed" if kind == "liveness" else (
                    "StartupProbeFailed")
                self._kill_message = message
        self._wake.set()

    def _run_once(self) -> tuple[int | None, str]:
        """Run one instance; (exit code, termination reason), or (None, "") if stopped."""
        with self._lock:
            self._kill_reason = None
            self._kill_message = None
        self._wake.clear()
        workdir = self.container.get("workingDir") or "/"
        try:
            log_fd = self._open_log()
            try:
                process = subprocess.Popen(
                    self._argv(),
                    env=self._env(),
                    cwd=workdir if os.path.isdir(workdir) else "/",
                    stdin=subprocess.DEVNULL,
                    stdout=log_fd,
                    stderr=log_fd,
                    start_new_session=True,
                    close_fds=True,
                )
            finally:
                os.close(log_fd)
        except OSError as exc:
            message = f"StartError: {exc}"
            self._set(last_exit_code=128, last_termination_reason=message)
            return 128, message
        probe_set = ProbeSet(self.probe_specs, time.monotonic(), self.on_change,
                             self._on_probe_fatal)
        self._set(phase="Running", reason=None, pid=process.pid, started_at=utc_now(),
                  backoff_seconds=None, probe_set=probe_set)
        probe_set.start()
        try:
            while True:
                if process.poll() is not None:
                    break
                if self._stop_requested.is_set():
                    kill_group(process, self.grace)
                    return None, ""
                with self._lock:
                    kill_reason = self._kill_reason
                if kill_reason is not None:
                    kill_group(process, self.grace)
                    break
                self._wake.wait(0.1)
                self._wake.clear()
        finally:
            probe_set.stop.set()
        _kill_leftovers(process.pid)  # children the container left in its group
        code = exit_code_of(process.returncode)
        with self._lock:
            reason = self._kill_reason or ("Completed" if code == 0 else "Error")
            probe_message = self._kill_message
        self._set(last_exit_code=code, last_termination_reason=reason, pid=None,
                  probe_set=None, phase="Terminated",
                  reason=probe_message or f"exited with code {code}")
        return code, reason


class Pod:
    """One pod instance (one config hash). Created by the runner, never mutated in place."""

    def __init__(
        self, manifest: PodManifest, settings: Settings, predecessor: Pod | None,
        on_change: Any,
    ) -> None:
        self.manifest = manifest
        self.settings = settings
        self.on_change = on_change
        self.predecessor = predecessor
        self.phase = "Pending"
        self.reason: str | None = None
        self.workers: list[ContainerWorker] = []
        self.stopping = False
        self.created_at = utc_now()

    @property
    def blocked(self) -> bool:
        """Not started because of admission or a missing binary (retried each scan)."""
        return not self.workers and not self.stopping

    def try_start(self) -> None:
        """Admit and start; on failure record why (the runner retries on later scans)."""
        pod = self.manifest.pod
        try:
            admit(pod)
            probes = {c["name"]: container_probes(c, self.settings.probe_time_scale)
                      for c in pod["spec"]["containers"]}
        except (AdmissionError, ProbeConfigError) as exc:
            self.phase, self.reason = "Failed", f"AdmissionFailed: {exc}"
            return
        binaries = {}
        for container in pod["spec"]["containers"]:
            binary = binary_for_image(container["image"], self.settings.bin_dir)
            if binary is None:
                self.phase = "ImageUnavailable"
                self.reason = (
                    f"no binary for image {container['image']} in {self.settings.bin_dir}"
                )
                return
            binaries[container["name"]] = binary
        spec = pod["spec"]
        grace = self.settings.stop_grace
        period = spec.get("terminationGracePeriodSeconds")
        if isinstance(period, int | float) and 0 <= period < grace:
            grace = float(period)
        self.phase, self.reason = "Pending", None
        self.workers = [
            ContainerWorker(
                pod_name=self.manifest.name,
                container=container,
                binary=binaries[container["name"]],
                probes=probes[container["name"]],
                restart_policy=str(spec.get("restartPolicy") or "Always"),
                grace=grace,
                settings=self.settings,
                predecessor=self.predecessor,
                on_change=self.on_change,
            )
            for container in spec["containers"]
        ]
        self.predecessor = None
        for worker in self.workers:
            worker.start()

    def request_stop(self) -> None:
        self.stopping = True
        for worker in self.workers:
            worker.request_stop()

    def join(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        for worker in self.workers:
            worker.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def finished(self) -> bool:
        return all(not worker.is_alive() for worker in self.workers)

    def status(self) -> dict[str, Any]:
        containers = [worker.snapshot() for worker in self.workers]
        base: dict[str, Any] = {
            "name": self.manifest.name,
            "namespace": self.manifest.namespace,
            "source": self.manifest.source,
            "configHash": self.manifest.config_hash,
            "createdAt": self.created_at,
        }
        if not containers:
            probes = {k: "none" for k in ("startup", "liveness", "readiness")}
            base.update(phase=self.phase, ready=False, restartCount=0, lastExitCode=None,
                        lastTerminationReason=None, reason=self.reason, pid=None,
                        startedAt=None, probes=probes, lastProbeError=None,
                        backoffSeconds=None, containers={})
            return base
        first = containers[0]
        phases = [c["phase"] for c in containers]
        if self.stopping:
            phase, reason = "Terminating", "manifest removed or changed"
        elif "Waiting" in phases:
            phase, reason = "Waiting", "CrashLoopBackOff"
        elif all(p == "Running" for p in phases):
            phase, reason = "Running", None
        else:
            waiting = next(c for c in containers if c["phase"] != "Running")
            phase, reason = waiting["phase"], waiting["reason"]
        base.update(
            phase=phase,
            ready=all(c["ready"] for c in containers) and phase == "Running",
            restartCount=sum(c["restartCount"] for c in containers),
            lastExitCode=first["lastExitCode"],
            lastTerminationReason=first["lastTerminationReason"],
            reason=reason,
            pid=first["pid"],
            startedAt=first["startedAt"],
            probes=first["probes"],
            lastProbeError=first["lastProbeError"],
            backoffSeconds=first["backoffSeconds"],
            containers={c["name"]: c for c in containers},
        )
        return base
