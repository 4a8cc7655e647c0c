"""Waiting for and checking a cluster: rollout waits, verify checks, status, polling."""
