"""HTTP: the v2 REST routes, the raw-ASGI infer fast path, the HTTP tensor codec and the
admin API."""

__all__: list[str] = []
