#!/usr/bin/env bash
# Installed as /usr/local/bin/kubelet-start; kubelet.service runs it (10-bootstrap.conf).
#
# Picks the kubelet's mode from what is on disk:
# - /etc/kubernetes/kubelet.conf and /etc/kubernetes/pki/ca.crt both present (bootstrap
#   has run): --config=config.yaml --kubeconfig=kubelet.conf. The kubelet registers the
#   node and creates a mirror pod for every static pod.
# - otherwise: standalone, --config=config-standalone.yaml and no --kubeconfig. The
#   kubelet still runs every manifest in /etc/kubernetes/manifests, but talks to no API
#   server. (A --kubeconfig naming a missing file, or a clientCAFile that does not exist
#   yet, would stop the kubelet from starting at all.)
# kubelet-kubeconfig.path restarts kubelet.service when either file appears or changes.
#
# The paths can be overridden through the environment (tests/test_vagrant.py does).
set -euo pipefail

kubelet_bin="${KUBELET_BIN:-/usr/bin/kubelet}"
kubeconfig="${KUBELET_KUBECONFIG:-/etc/kubernetes/kubelet.conf}"
client_ca="${KUBELET_CLIENT_CA:-/etc/kubernetes/pki/ca.crt}"
config_dir="${KUBELET_CONFIG_DIR:-/var/lib/kubelet}"

if [[ -s "$kubeconfig" && -s "$client_ca" ]]; then
  echo "kubelet-start: $kubeconfig found: registering with the API server" >&2
  exec "$kubelet_bin" --config="$config_dir/config.yaml" --kubeconfig="$kubeconfig" "$@"
fi

echo "kubelet-start: no $kubeconfig or $client_ca yet: standalone (static pods only)" >&2
exec "$kubelet_bin" --config="$config_dir/config-standalone.yaml" "$@"
