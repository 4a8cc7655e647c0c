"""What a master runs, read-only: static-pod state and preflight facts (through transport)."""
