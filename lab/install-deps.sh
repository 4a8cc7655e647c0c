#!/usr/bin/env bash
# Installs what the lab, `make demo` and `make test` need on a Debian 12 machine (root):
# the Debian packages below, then (via make) the venv and the lab's binaries. Quick when
# everything is present: apt runs only for packages that are missing.
set -euo pipefail

# gcc, libc6-dev, libseccomp-dev, pkg-config: runc (the kubelet mode's OCI runtime) is
# built with cgo and libseccomp, as kubeadm's manifests ask for the RuntimeDefault profile.
packages=(openssh-server openssh-client openssl iproute2 iptables sudo procps util-linux
          shellcheck ruby make python3-venv ca-certificates
          gcc libc6-dev libseccomp-dev pkg-config)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ! command -v go >/dev/null && [ ! -x /usr/local/go/bin/go ]; then
  echo "install-deps: Go 1.26+ is needed to build the lab's Kubernetes and etcd (not found on PATH or in /usr/local/go)" >&2
  exit 2
fi
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing Debian packages: ${missing[*]}; run: sudo lab/install-deps.sh" >&2
  exit 2
fi
export DEBIAN_FRONTEND=noninteractive
# Installing openssh-server must not start an sshd on the machine's own port 22.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
echo "install-deps: installing ${missing[*]}"
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
