"""Trusted artifacts: manifests, signatures, publishing, and the checks before a version loads."""

from baton.artifacts.verify import Verifier, verify_version

__all__ = ["Verifier", "verify_version"]
