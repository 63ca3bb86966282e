"""From a version's files to a routable handle: verify → load → contract check → warm-up →
golden set → READY, plus the memory pre-flight that decides whether a load may start."""

__all__: list[str] = []
