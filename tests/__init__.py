"""The test suite (a package, so each helper module loads once, as tests.<name>)."""
