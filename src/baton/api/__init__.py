"""Thin protocol adapters over :class:`baton.api.dataplane.DataPlane`."""

__all__: list[str] = []
