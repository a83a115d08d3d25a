"""The package version, in one place (the store records it with every run)."""

__version__ = "0.1.0"
