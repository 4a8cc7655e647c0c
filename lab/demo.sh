#!/usr/bin/env bash
# `make demo`: bring up the namespace lab, run `bootstrap init` on it (all four components:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, the real programs built
# from their Go modules), show the verify table, then ask the new cluster through kubectl.
# The lab stays up afterwards so you can poke at it; `make lab-down` removes every trace.
# NODE=kubelet (make demo NODE=kubelet): the hosts run the real kubelet with containerd,
# and the demo ends with the nodes and the mirror pods of every master from kubectl.
set -euo pipefail
cd "$(dirname "$0")/.."
masters=${1:-3}
node=${NODE:-runner}
bin=.venv/bin

if [ "$(id -u)" -ne 0 ]; then
  echo "make demo: the lab needs root (network, mount and PID namespaces)" >&2
  exit 2
fi

up_args=(--masters "$masters" --node "$node")
if [ -n "${LAB_BIN_DIR:-}" ]; then
  up_args+=(--bin-dir "$LAB_BIN_DIR")   # e.g. official release binaries
fi
"$bin/python" -m lab up "${up_args[@]}"

state_dir=lab/.state${LAB_INSTANCE:+-$LAB_INSTANCE}
inventory=$state_dir/masters.yaml
kubectl=$("$bin/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["bin_dir"])' "$state_dir/lab.json")/kubectl

# The instance's own state dir (lab/config.py LAB_BOOTSTRAP_STATE): another instance's
# cluster keeps its CA.
bootstrap_state=.bootstrap/lab${LAB_INSTANCE:+-$LAB_INSTANCE}
status=0
"$bin/bootstrap" init --inventory "$inventory" --state-dir "$bootstrap_state" || status=$?
echo
echo "== Second run (must change nothing):"
"$bin/bootstrap" init --inventory "$inventory" --state-dir "$bootstrap_state" || status=$?
echo
admin=$bootstrap_state/admin.conf
if [ -x "$kubectl" ] && [ -f "$admin" ]; then
  echo "== kubectl --kubeconfig $admin get --raw /readyz"
  "$kubectl" --kubeconfig "$admin" get --raw /readyz || status=1
  echo
  echo "== kubectl --kubeconfig $admin get leases -n kube-system"
  "$kubectl" --kubeconfig "$admin" get leases -n kube-system || status=1
  echo
  if [ "$node" = kubelet ]; then
    # The kubelets register their nodes and create the mirror pods once bootstrap wrote
    # kubelet.conf; wait (bounded) until every master's four are there.
    want=$((masters * 4))
    for _ in $(seq 1 60); do
      have=$("$kubectl" --kubeconfig "$admin" get pods -n kube-system --no-headers 2>/dev/null | grep -c ' Running ' || true)
      [ "$have" -ge "$want" ] && break
      sleep 2
    done
    echo "== kubectl --kubeconfig $admin get nodes -o wide"
    "$kubectl" --kubeconfig "$admin" get nodes -o wide || status=1
    echo
    echo "== kubectl --kubeconfig $admin get pods -n kube-system -o wide  (the mirror pods)"
    "$kubectl" --kubeconfig "$admin" get pods -n kube-system -o wide || status=1
    [ "$have" -ge "$want" ] || { echo "make demo: $have of $want mirror pods Running" >&2; status=1; }
    echo
  fi
fi
"$bin/python" -m lab status || true
echo
echo "The lab is still up. Try:  $bin/bootstrap verify --inventory $inventory --state-dir $bootstrap_state"
echo "                           $bin/bootstrap status --inventory $inventory --state-dir $bootstrap_state"
echo "                           $kubectl --kubeconfig $admin get ns"
echo "Tear it down with:         make lab-down"
exit "$status"
