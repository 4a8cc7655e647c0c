"""Day-2 verbs: certs check/renew, etcd snapshot, upgrade, reset/remove-master, serve."""
