"""Bootstrap a highly-available Kubernetes control plane with stacked etcd."""

__version__ = "0.1.0"
