#!/usr/bin/env bash
# `make demo`: bring up the namespace lab, run `bootstrap init` on it (all four components:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, the real programs built
# from their Go modules), show the verify table, then ask the new cluster through kubectl.
# The lab stays up afterwards so you can poke at it; `make lab-down` removes every trace.
set -euo pipefail
cd "$(dirname "$0")/.."
masters=${1:-3}
bin=.venv/bin

if [ "$(id -u)" -ne 0 ]; then
  echo "make demo: the lab needs root (network, mount and PID namespaces)" >&2
  exit 2
fi

up_args=(--masters "$masters")
if [ -n "${LAB_BIN_DIR:-}" ]; then
  up_args+=(--bin-dir "$LAB_BIN_DIR")   # e.g. official release binaries
fi
"$bin/python" -m lab up "${up_args[@]}"

state_dir=lab/.state${LAB_INSTANCE:+-$LAB_INSTANCE}
inventory=$state_dir/masters.yaml
kubectl=$("$bin/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["bin_dir"])' "$state_dir/lab.json")/kubectl

status=0
"$bin/bootstrap" init --inventory "$inventory" || status=$?
echo
echo "== Second run (must change nothing):"
"$bin/bootstrap" init --inventory "$inventory" || status=$?
echo
admin=.bootstrap/lab/admin.conf
if [ -x "$kubectl" ] && [ -f "$admin" ]; then
  echo "== kubectl --kubeconfig $admin get --raw /readyz"
  "$kubectl" --kubeconfig "$admin" get --raw /readyz || status=1
  echo
  echo "== kubectl --kubeconfig $admin get leases -n kube-system"
  "$kubectl" --kubeconfig "$admin" get leases -n kube-system || status=1
  echo
fi
"$bin/python" -m lab status || true
echo
echo "The lab is still up. Try:  $bin/bootstrap verify --inventory $inventory"
echo "                           $bin/bootstrap status --inventory $inventory"
echo "                           $kubectl --kubeconfig $admin get ns"
echo "Tear it down with:         make lab-down"
exit "$status"
