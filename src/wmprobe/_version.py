"""The package version, defined once (pyproject.toml and every module that records it read it)."""

__version__ = "0.1.0"
