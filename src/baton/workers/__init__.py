"""Worker processes: one node, every core (``baton serve --workers N``).

The supervisor (:mod:`baton.workers.pool`) owns sources, verification, the manager, rollouts,
the audit log and the admin API; N worker processes (:mod:`baton.workers.worker`) own runtimes
and serve inference on the shared HTTP and gRPC ports. :mod:`baton.workers.generation` is what
passes between them.
"""

__all__: list[str] = []
