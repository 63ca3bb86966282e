"""Thin protocol adapters over :class:`baton.dataplane.DataPlane`."""
