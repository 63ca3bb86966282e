"""Thin protocol adapters over :class:`baton.dataplane.DataPlane`."""

__all__: list[str] = []
