"""The request path below the protocol adapters: the immutable serving map, routing, traffic
split, per-version handles (in-flight counting and drain), dynamic batching, shadow copies and
the v2 tensor codec. Takes no lock; knows nothing of how versions are loaded."""

__all__: list[str] = []
