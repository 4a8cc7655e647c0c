"""The operator's machine: console output, std streams, local files, in-memory credential files."""
