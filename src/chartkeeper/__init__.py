"""Chartkeeper: open-source health information management."""

__version__ = "0.1.0"
