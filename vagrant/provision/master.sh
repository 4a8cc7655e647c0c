#!/usr/bin/env bash
# Prepares one Debian 12 VM as a master for `bootstrap init` (run as root by Vagrant):
# swap off, the kernel settings the kubelet needs, a cgroup v2 check, containerd 2.x and
# runc from their upstream releases (Debian 12 ships containerd 1.6, which Kubernetes
# 1.36+ does not support; no Debian release has 2.x), kubelet/kubectl/crictl from the
# Kubernetes package repository of one minor
# version, and a kubelet that runs the static pods in /etc/kubernetes/manifests before
# /etc/kubernetes/kubelet.conf exists and registers the node once bootstrap wrote it.
#
# Usage: master.sh NODE_IP
#   (environment: KUBERNETES_MINOR, KUBERNETES_VERSION, IMAGES, FILES, PAUSE_IMAGE,
#    CONTAINERD_VERSION, RUNC_VERSION)
# Safe to run again (`vagrant provision`).
set -euo pipefail

NODE_IP="${1:?usage: master.sh NODE_IP}"
# Keep equal to the minor of masters.yaml's kubernetesVersion (tests/test_vagrant.py).
KUBERNETES_MINOR="${KUBERNETES_MINOR:-v1.37}"
# The exact release to pin kubelet and kubectl to (v1.37.2); empty: the newest of the minor.
KUBERNETES_VERSION="${KUBERNETES_VERSION:-}"
# Control-plane images to pull ahead of `bootstrap init` (space-separated; may be empty).
IMAGES="${IMAGES:-}"
# What the Vagrantfile's file provisioner uploaded (vagrant/files/).
FILES="${FILES:-/tmp/bootstrap-files}"
# kubeadm v1.37's pause image (PauseVersion 3.10.2); containerd's own default differs.
PAUSE_IMAGE="${PAUSE_IMAGE:-registry.k8s.io/pause:3.10.2}"
# containerd 2.2+ is what Kubernetes 1.36+ supports; 2.3 is the long-term-support line.
CONTAINERD_VERSION="${CONTAINERD_VERSION:-2.3.4}"
RUNC_VERSION="${RUNC_VERSION:-1.4.3}"
CONTAINERD_RELEASES="https://github.com/containerd/containerd/releases/download"
RUNC_RELEASES="https://github.com/opencontainers/runc/releases/download"

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

die() {
  echo "master.sh: $*" >&2
  exit 1
}

log() {
  echo "==> $*"
}

check_inputs() {
  [[ "$KUBERNETES_MINOR" =~ ^v1\.[0-9]+$ ]] || die "KUBERNETES_MINOR must look like v1.34, got '$KUBERNETES_MINOR'"
  [[ "$NODE_IP" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "NODE_IP must be an IPv4 address, got '$NODE_IP'"
  if [[ -n "$KUBERNETES_VERSION" ]]; then
    [[ "$KUBERNETES_VERSION" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "KUBERNETES_VERSION must look like v1.34.1, got '$KUBERNETES_VERSION'"
    [[ "$KUBERNETES_VERSION" == "$KUBERNETES_MINOR".* ]] || die "KUBERNETES_VERSION $KUBERNETES_VERSION is not a $KUBERNETES_MINOR release"
  fi
  [[ -f "$FILES/kubelet-config.yaml" ]] || die "$FILES/kubelet-config.yaml missing (file provisioner did not run?)"
  [[ "$CONTAINERD_VERSION" =~ ^2\.([2-9]|[1-9][0-9])\.[0-9]+$ ]] || die "CONTAINERD_VERSION must be 2.2.0 or newer (Kubernetes 1.36+), got '$CONTAINERD_VERSION'"
  [[ "$RUNC_VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "RUNC_VERSION must look like 1.4.3, got '$RUNC_VERSION'"
}

require_cgroup_v2() {
  # The kubelet refuses cgroup v1 since 1.35 unless failCgroupV1: false; we keep it
  # refusing (kubelet-config.yaml) and check here, where the message can say what to do.
  [[ -f /sys/fs/cgroup/cgroup.controllers ]] || die "the VM boots with cgroup v1, which kubelet 1.35+ refuses: boot with systemd.unified_cgroup_hierarchy=1 (Debian 12's default) or use another box"
}

disable_swap() {
  log "swap off (now and in /etc/fstab)"
  swapoff -a
  # Comment out every active swap entry so it stays off after a reboot.
  sed -ri '/^[^#].*[[:space:]]swap[[:space:]]/s/^/#/' /etc/fstab
  systemctl daemon-reload
}

kernel_settings() {
  log "kernel modules overlay, br_netfilter; sysctls"
  cat >/etc/modules-load.d/kubernetes.conf <<'CONF'
overlay
br_netfilter
CONF
  modprobe overlay
  modprobe br_netfilter
  cat >/etc/sysctl.d/99-kubernetes.conf <<'CONF'
net.ipv4.ip_forward = 1
net.bridge.bridge-nf-call-iptables = 1
net.bridge.bridge-nf-call-ip6tables = 1
CONF
  sysctl --system >/dev/null
}

# Download $1/$2 and its checksum file $1/$3 into the current directory and verify it.
fetch_verified() {
  local base="$1" file="$2" sums="$3"
  curl -fsSLO "$base/$file"
  curl -fsSLO "$base/$sums"
  grep -E "[[:space:]]\*?$file\$" "$sums" | sha256sum -c - >/dev/null || die "checksum mismatch for $file"
}

install_containerd() {
  log "containerd $CONTAINERD_VERSION + runc $RUNC_VERSION from their releases (systemd cgroup driver)"
  apt-get update -q
  apt-get install "${APT_OPTS[@]}" --no-install-recommends ca-certificates curl gpg apt-transport-https
  # Debian's containerd 1.6 / runc would shadow the upstream ones: never both.
  apt-get purge -y -q containerd runc >/dev/null 2>&1 || true
  if ! containerd --version 2>/dev/null | grep -q "v$CONTAINERD_VERSION "; then
    local tmp
    tmp=$(mktemp -d)
    (
      cd "$tmp"
      fetch_verified "$CONTAINERD_RELEASES/v$CONTAINERD_VERSION" \
        "containerd-$CONTAINERD_VERSION-linux-amd64.tar.gz" \
        "containerd-$CONTAINERD_VERSION-linux-amd64.tar.gz.sha256sum"
      tar -C /usr/local -xzf "containerd-$CONTAINERD_VERSION-linux-amd64.tar.gz"
      fetch_verified "$RUNC_RELEASES/v$RUNC_VERSION" runc.amd64 runc.sha256sum
      install -m 0755 runc.amd64 /usr/local/sbin/runc
    )
    rm -rf "$tmp"
  fi
  install -m 0644 "$FILES/containerd.service" /etc/systemd/system/containerd.service
  install -d -m 0755 /etc/containerd
  local config=/etc/containerd/config.toml
  # containerd 2.x writes config version 3: the runc options carry SystemdCgroup and the
  # pause image is `sandbox` under the CRI images plugin's pinned_images.
  containerd config default >"$config.new"
  # The kubelet is configured with cgroupDriver: systemd; containerd must agree.
  sed -i -E \
    -e 's/SystemdCgroup = false/SystemdCgroup = true/' \
    -e "s#^([[:space:]]*sandbox = ).*#\\1'$PAUSE_IMAGE'#" \
    "$config.new"
  grep -q 'SystemdCgroup = true' "$config.new" || die "could not set SystemdCgroup = true in $config"
  grep -q "sandbox = '$PAUSE_IMAGE'" "$config.new" || die "could not set the pause image $PAUSE_IMAGE in $config"
  mv "$config.new" "$config"
  systemctl daemon-reload
  systemctl enable containerd
  systemctl restart containerd
}

# `apt-cache madison` lines on stdin ("kubelet | 1.34.1-1.1 | https://... Packages", newest
# first) -> the newest package version of release $1 (v1.34.1), or nothing.
pick_release() {
  awk -F'|' -v want="${1#v}-" '{ gsub(/ /, "", $2) } index($2, want) == 1 { print $2; exit }'
}

install_kubernetes_packages() {
  log "kubelet, kubectl, cri-tools from the $KUBERNETES_MINOR package repository"
  local repo="https://pkgs.k8s.io/core:/stable:/$KUBERNETES_MINOR/deb/"
  local keyring=/etc/apt/keyrings/kubernetes-apt-keyring.gpg
  install -d -m 0755 /etc/apt/keyrings
  curl -fsSL "${repo}Release.key" | gpg --batch --yes --dearmor -o "$keyring"
  chmod 0644 "$keyring"
  echo "deb [signed-by=$keyring] $repo /" >/etc/apt/sources.list.d/kubernetes.list
  apt-get update -q
  # A re-provision with another KUBERNETES_MINOR must be allowed to move the packages.
  apt-mark unhold kubelet kubectl cri-tools >/dev/null || true
  local pin=""
  if [[ -n "$KUBERNETES_VERSION" ]]; then
    # pkgs.k8s.io names releases 1.34.1-1.1: take the newest build of that release.
    pin=$(apt-cache madison kubelet | pick_release "$KUBERNETES_VERSION")
    [[ -n "$pin" ]] || die "kubelet ${KUBERNETES_VERSION#v} is not in $repo (apt-cache madison kubelet)"
    log "pinning kubelet and kubectl to $pin"
    pin="=$pin"
  fi
  apt-get install "${APT_OPTS[@]}" --allow-downgrades "kubelet$pin" "kubectl$pin" cri-tools
  apt-mark hold kubelet kubectl cri-tools
}

pull_images() {
  # Best effort: init pulls what is missing anyway, only with less time to spare.
  [[ -n "$IMAGES" ]] || return 0
  local image
  for image in $IMAGES; do
    log "pulling $image"
    crictl pull "$image" >/dev/null || echo "master.sh: warning: could not pull $image now; the kubelet will pull it when its pod starts" >&2
  done
}

configure_kubelet() {
  log "kubelet: static pods from /etc/kubernetes/manifests, node IP $NODE_IP"
  install -d -m 0755 /etc/kubernetes
  install -d -m 0700 /etc/kubernetes/manifests
  install -d -m 0700 /var/lib/kubelet
  install -m 0644 "$FILES/kubelet-config.yaml" /var/lib/kubelet/config.yaml
  install -m 0644 "$FILES/kubelet-config-standalone.yaml" /var/lib/kubelet/config-standalone.yaml
  install -m 0755 "$FILES/kubelet-start.sh" /usr/local/bin/kubelet-start
  install -d -m 0755 /etc/systemd/system/kubelet.service.d
  install -m 0644 "$FILES/10-bootstrap.conf" /etc/systemd/system/kubelet.service.d/10-bootstrap.conf
  install -m 0644 "$FILES/kubelet-kubeconfig.path" /etc/systemd/system/kubelet-kubeconfig.path
  install -m 0644 "$FILES/kubelet-kubeconfig.service" /etc/systemd/system/kubelet-kubeconfig.service
  install -m 0644 "$FILES/crictl.yaml" /etc/crictl.yaml
  # Without --node-ip the kubelet would report the provider's NAT/management address.
  echo "KUBELET_EXTRA_ARGS=--node-ip=$NODE_IP" >/etc/default/kubelet
  systemctl daemon-reload
  systemctl enable --now kubelet-kubeconfig.path
  systemctl enable kubelet
  systemctl restart kubelet
}

report() {
  log "done: $(hostname) $NODE_IP, $(kubelet --version), containerd $(containerd --version | awk '{print $3}')"
  systemctl --no-pager --lines=0 status kubelet || true
}

main() {
  check_inputs
  require_cgroup_v2
  disable_swap
  kernel_settings
  install_containerd
  install_kubernetes_packages
  configure_kubelet
  pull_images
  report
}

# Sourced (the tests do, to call pick_release): define the functions only.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main
fi
