"""Artifact checks that run before a version is loaded."""

from baton.artifacts.verify import verify_version

__all__ = ["verify_version"]
