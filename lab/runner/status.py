"""The runner's status file: the lab's answer to `crictl ps` / `kubectl get pods`.

Written atomically (temp file in the same directory + fsync + rename) whenever something
changes and at least every 2 s, so a reader never sees half a document. Readers (the
`bootstrap` tool over SSH) may treat `updatedAt` older than a few seconds as "runner dead".

Format (JSON object; times are UTC RFC 3339 strings with a `Z`):

    {
      "runner": {"pid": int, "startedAt": str, "manifestDir": str, "binDir": str,
                 "manifestUrl": str | null, "logsDir": str, "backoffBase": float,
                 "probeTimeScale": float, "stopping": bool},
      "updatedAt": str,
      "pods": {
        "<namespace>/<name>": {
          "name": str, "namespace": str,          # namespace defaults to "default"
          "source": str,                          # manifest file path, or the URL
          "configHash": str,                      # sha256 of canonical JSON of the pod
          "createdAt": str,                       # when this config hash was first seen
          "phase": "Pending" | "Running" | "Waiting" | "Failed" | "ImageUnavailable"
                   | "Terminating" | "Terminated" | "Succeeded",
          "reason": str | null,                   # Waiting: "CrashLoopBackOff";
                                                  # Failed: "AdmissionFailed: <why>";
                                                  # ImageUnavailable: "no binary for image
                                                  #   <image> in <bin-dir>"
          "ready": bool,                          # never true unless phase is Running
          "restartCount": int,                    # restarts of THIS config hash (sum over
                                                  #   containers); a changed manifest -> 0
          "lastExitCode": int | null,             # 128+N when killed by signal N
          "lastTerminationReason": str | null,    # Error | Completed | LivenessProbeFailed
                                                  #   | StartupProbeFailed | StartError: ...
          "pid": int | null,                      # the (first) container's process
          "startedAt": str | null,                # start of the current process
          "backoffSeconds": float | null,         # the wait in progress while Waiting
          "probes": {"startup" | "liveness" | "readiness":
                     "success" | "failure" | "pending" | "none"},
          "lastProbeError": str | null,
          "containers": {"<container>": {same per-container fields}}
        }
      },
      "sourceErrors": [{"file": str, "error": str}],       # current bad files (not run)
      "conflicts": [{"pod": str, "sources": [str, ...], "kept": str}],
      "parseFailures": [{"file": str, "error": str, "time": str}],   # last 100
      "parseFailureCount": int,          # every distinct bad content ever seen, monotonic
      "manifestDirError": str | null,    # the directory could not be listed (pods kept)
      "urlSource": null | {"url", "lastAttempt", "lastSuccess", "lastError",
                           "lastStatusCode", "podCount", "fetches", "errors"}
    }
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import Any


def write_atomic(path: str, document: dict[str, Any]) -> None:
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    data = json.dumps(document, indent=2, sort_keys=True).encode("utf-8") + b"\n"
    fd, temp = tempfile.mkstemp(prefix=".status-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def read_status(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        document = json.load(handle)
    if not isinstance(document, dict):
        raise ValueError(f"{path}: status is not a JSON object")
    return document
