"""Sources declare desired state: for each model, every complete version they offer."""

from baton.sources.base import ModelSpec, Publish, Source
from baton.sources.filesystem import FilesystemSource
from baton.sources.static import StaticSource

__all__ = ["FilesystemSource", "ModelSpec", "Publish", "Source", "StaticSource"]
