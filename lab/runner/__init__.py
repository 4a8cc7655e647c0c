"""The lab kubelet: a process-mode static-pod runner (one per lab host).

`python -m lab.runner --manifests DIR --status FILE --logs DIR --bin-dir DIR ...` watches a
manifest directory (and optionally a `--manifest-url`) the way the kubelet does, admits each
pod, runs each container's command as a process of the host (image -> binary looked up in
the bin dir), restarts with the kubelet's back-off, runs httpGet probes, and writes a JSON
status file whose format is documented in `lab.runner.status`.

Modules: manifests (reading/parsing), httpsource (URL source), admission (mount and
hostPath checks, image lookup), probes, pod (process supervision), runner (reconcile loop),
status (status file format and atomic writes).
"""
