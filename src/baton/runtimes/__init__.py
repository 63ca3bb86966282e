"""Backends behind one small contract (:class:`baton.runtimes.base.Runtime`)."""

from baton.runtimes.base import Runtime
from baton.runtimes.registry import runtime_for

__all__ = ["Runtime", "runtime_for"]
