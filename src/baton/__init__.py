"""Baton: a model-inference server that updates models in production without anyone noticing.

The public API is what ``__all__`` names; everything else is internal and may change.
"""

from baton.control.lifecycle import VersionState
from baton.errors import BatonError
from baton.runtimes.base import Runtime
from baton.settings import ModelSettings, ServerSettings
from baton.types import Signature, TensorSpec

__all__ = [
    "BatonError",
    "ModelSettings",
    "Runtime",
    "ServerSettings",
    "Signature",
    "TensorSpec",
    "VersionState",
    "__version__",
]

__version__ = "0.1.0"
