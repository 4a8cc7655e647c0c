"""The runner's main loop: read sources, reconcile pods, write status.

Reconciliation is by pod key (`namespace/name`) and config hash:
- a key no source defines any more: its pod is stopped (shown as Terminating until its
  processes are gone, then removed from status);
- a key whose config hash changed: the old instance is stopped, the new one starts once
  the old one's processes are gone (ports are reused), with restartCount 0;
- a key whose hash is unchanged: never touched (a moved/renamed file only updates
  `source`), so re-pushing identical manifests never restarts anything.
Pods that could not start (admission failure, no binary) are retried on every directory
scan, the way a kubelet retries volume setup and image pulls.

Conflicts: within the directory the first file by name wins (files are listed sorted);
across sources the directory wins over the URL; within a PodList the first item wins.
Every conflict is reported in status with all its sources.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
from typing import Any

from lab.runner.dirwatch import DirWatch, drain
from lab.runner.httpsource import UrlSource
from lab.runner.manifests import DirectoryReader, PodManifest
from lab.runner.pod import Pod, Settings, utc_now
from lab.runner.status import write_atomic
from lab.runner.urlconfig import Change, ConfigWatcher, UrlSettings

log = logging.getLogger("lab.runner")

MAX_PARSE_FAILURES = 100
STATUS_REFRESH = 2.0
TICK = 0.2


class Runner:
    def __init__(
        self,
        manifest_dir: str,
        status_path: str,
        settings: Settings,
        file_check_frequency: float = 1.0,
        url_source: UrlSource | None = None,
        config: ConfigWatcher | None = None,
    ) -> None:
        self.manifest_dir = manifest_dir
        self.status_path = status_path
        self.settings = settings
        self.file_check_frequency = file_check_frequency
        self.url_source = url_source
        self.config = config
        # What the start-up flags asked for, restored when the config file goes away.
        self._flag_settings = (
            UrlSettings(url_source.url, tuple(url_source.headers), url_source.ca_file,
                        url_source.frequency)
            if url_source is not None else None
        )
        self.reader = DirectoryReader(manifest_dir)
        # Changes are read at once (inotify, as the kubelet); the periodic scan re-lists.
        self.watch = DirWatch(manifest_dir)
        self.pods: dict[str, Pod] = {}
        self.terminating: list[tuple[str, Pod]] = []
        self.stop_event = threading.Event()
        self._dirty = threading.Event()
        # A pod's thread that changes its state (started, exited) wakes the loop, which
        # writes the status file at once instead of at the next tick: a node reports a
        # started container without a 0.2 s delay (the bootstrapper's etcd head start
        # waits for exactly that report).
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.started_at = utc_now()
        self.source_errors: list[dict[str, str]] = []
        self.conflicts: list[dict[str, Any]] = []
        self.parse_failures: list[dict[str, str]] = []
        self.parse_failure_count = 0
        self.manifest_dir_error: str | None = None
        self._dir_manifests: list[PodManifest] = []
        self._url_version = -1
        self._url_manifests: list[PodManifest] = []
        self._stopping = False

    def mark_dirty(self) -> None:
        self._dirty.set()
        self.wake()

    def wake(self) -> None:
        with contextlib.suppress(OSError):  # full pipe: a wake-up is pending anyway
            os.write(self._wake_w, b"!")

    # -- sources ---------------------------------------------------------------------------

    def _scan_directory(self) -> None:
        scan = self.reader.scan()
        if scan.listing_error is not None:
            if scan.listing_error != self.manifest_dir_error:
                log.error("%s (keeping current pods)", scan.listing_error)
            self.manifest_dir_error = scan.listing_error
            return
        self.manifest_dir_error = None
        for path, error in scan.new_failures:
            log.error("manifest %s: %s (not run)", path, error)
            self.parse_failure_count += 1
            self.parse_failures.append({"file": path, "error": error, "time": utc_now()})
        del self.parse_failures[:-MAX_PARSE_FAILURES]
        self.source_errors = [{"file": f, "error": e} for f, e in scan.errors]
        self._dir_manifests = scan.manifests

    def _apply_config(self) -> bool:
        """Swap the URL source when the config file changed; True if the pod set changed."""
        change: Change | None = self.config.poll() if self.config is not None else None
        if change is None:
            return False
        settings = change.settings if change.from_file else self._flag_settings
        if self.url_source is not None:
            self.url_source.stop()
        if settings is None:
            log.info("manifest URL source off")
            self.url_source = None
            changed = bool(self._url_manifests)
            self._url_manifests = []
            return changed
        self.url_source = UrlSource(settings.url, list(settings.headers), settings.frequency,
                                    settings.ca_file)
        # The new source starts at version 0 with no pods: keep the last good pods until
        # its first successful fetch (a wrong token must not stop anything).
        self._url_version = 0
        self.url_source.start()
        return False

    def _poll_url(self) -> bool:
        if self.url_source is None:
            return False
        version, manifests = self.url_source.pods()
        if version == self._url_version:
            return False
        self._url_version = version
        self._url_manifests = manifests
        log.info("manifest URL: %d pod(s)", len(manifests))
        return True

    def desired(self) -> dict[str, PodManifest]:
        chosen: dict[str, PodManifest] = {}
        sources: dict[str, list[str]] = {}
        for manifest in [*self._dir_manifests, *self._url_manifests]:
            sources.setdefault(manifest.key, []).append(manifest.source)
            chosen.setdefault(manifest.key, manifest)
        conflicts = [
            {"pod": key, "sources": found, "kept": chosen[key].source}
            for key, found in sorted(sources.items()) if len(found) > 1
        ]
        if conflicts != self.conflicts:
            for conflict in conflicts:
                log.error("conflict: pod %s defined by %s; running the one from %s",
                          conflict["pod"], ", ".join(conflict["sources"]), conflict["kept"])
        self.conflicts = conflicts
        return chosen

    # -- pods ------------------------------------------------------------------------------

    def reconcile(self, retry_blocked: bool) -> None:
        desired = self.desired()
        for key in list(self.pods):
            if key not in desired:
                log.info("pod %s: manifest gone, stopping", key)
                self._retire(key)
        for key, manifest in desired.items():
            current = self.pods.get(key)
            if current is not None and current.manifest.config_hash == manifest.config_hash:
                if current.manifest.source != manifest.source:
                    current.manifest = manifest  # same pod, new file name: leave it running
                if retry_blocked and current.blocked:
                    current.try_start()
                continue
            predecessor = None
            if current is not None:
                log.info("pod %s: manifest changed, restarting", key)
                predecessor = self._retire(key)
            else:
                log.info("pod %s: new from %s", key, manifest.source)
            pod = Pod(manifest, self.settings, predecessor, self.mark_dirty)
            self.pods[key] = pod
            pod.try_start()
            if pod.blocked:
                log.error("pod %s: %s: %s", key, pod.phase, pod.reason)

    def _retire(self, key: str) -> Pod:
        pod = self.pods.pop(key)
        pod.request_stop()
        self.terminating.append((key, pod))
        self.mark_dirty()
        return pod

    def _reap(self) -> None:
        alive = [(key, pod) for key, pod in self.terminating if not pod.finished()]
        if len(alive) != len(self.terminating):
            self.mark_dirty()
        self.terminating = alive

    def stop_all(self) -> None:
        self._stopping = True
        for key in list(self.pods):
            self._retire(key)
        self.write_status()
        for _key, pod in self.terminating:
            pod.join()
        self.terminating = []

    # -- status ----------------------------------------------------------------------------

    def status_document(self) -> dict[str, Any]:
        pods: dict[str, Any] = {}
        for key, pod in self.terminating:
            pods[key] = pod.status()
        for key, pod in self.pods.items():
            pods[key] = pod.status()  # a replacement hides the instance it replaces
        return {
            "runner": {
                "pid": os.getpid(),
                "startedAt": self.started_at,
                "manifestDir": self.manifest_dir,
                "binDir": self.settings.bin_dir,
                "logsDir": self.settings.logs_dir,
                "manifestUrl": self.url_source.url if self.url_source else None,
                "backoffBase": self.settings.backoff_base,
                "probeTimeScale": self.settings.probe_time_scale,
                "stopping": self._stopping,
            },
            "updatedAt": utc_now(),
            "pods": pods,
            "sourceErrors": self.source_errors,
            "conflicts": self.conflicts,
            "parseFailures": self.parse_failures,
            "parseFailureCount": self.parse_failure_count,
            "manifestDirError": self.manifest_dir_error,
            "urlSource": self.url_source.status() if self.url_source else None,
            "configError": self.config.error if self.config else None,
        }

    def write_status(self) -> None:
        try:
            write_atomic(self.status_path, self.status_document())
        except OSError:
            log.exception("cannot write status %s", self.status_path)

    # -- loop ------------------------------------------------------------------------------

    def run(self) -> None:
        log.info("runner %d: manifests %s, bin dir %s", os.getpid(), self.manifest_dir,
                 self.settings.bin_dir)
        if self.url_source is not None:
            self.url_source.start()
        next_scan = 0.0
        last_write = 0.0
        while not self.stop_event.is_set():
            now = time.monotonic()
            try:
                scanned = now >= next_scan
                config_changed = False
                if scanned:
                    self.watch.ensure()  # before listing, so no change falls in between
                    self._scan_directory()
                    config_changed = self._apply_config()
                    next_scan = now + self.file_check_frequency
                url_changed = self._poll_url() or config_changed
                if scanned or url_changed:
                    self.reconcile(retry_blocked=scanned)
                self._reap()
            except Exception:  # the runner must outlive any one bad manifest
                log.exception("reconcile failed; continuing")
            if self._dirty.is_set() or now - last_write >= STATUS_REFRESH or scanned:
                self._dirty.clear()
                self.write_status()
                last_write = now
            if self.stop_event.is_set():
                break
            if self.watch.active:
                if self.watch.wait(TICK, self._wake_r):
                    next_scan = 0.0  # a manifest changed: read the directory now
            else:
                ready, _, _ = select.select([self._wake_r], [], [], TICK)
                if ready:
                    drain(self._wake_r)
        self.watch.close()
        if self.url_source is not None:
            self.url_source.stop()
        log.info("runner stopping: stopping %d pod(s)", len(self.pods))
        self.stop_all()
        self.write_status()
        log.info("runner stopped")
