"""One run's shared data: the Session (inventory, PKI, hosts, desired trees) and its etcd view."""
