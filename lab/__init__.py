"""The local lab: N namespace "hosts" on one Linux machine (root only).

Each host is a network + mount + UTS + PID namespace with its own /etc/kubernetes,
/var/lib/etcd, /var/lib/kubelet, /etc/ssh, hostname and a real OpenSSH sshd; the lab
kubelet (``lab.runner``) runs inside each host. ``python -m lab --help`` for the CLI,
``lab.api`` for tests. Kept import-light: ``lab.hostinit`` runs as each host's PID 1.
"""
