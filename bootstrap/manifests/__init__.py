"""Desired state, pure: component facts, rendered static-pod manifests, per-master plans."""
