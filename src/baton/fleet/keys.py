"""The fleet's key layout in etcd, in one place.

::

    /baton/<fleet>/models/<model>/target     {"version", "digest", "published"}   (CAS writes)
    /baton/<fleet>/rollouts/<model>          the rollout record (see baton.fleet.rollout)
    /baton/<fleet>/nodes/<node>              the node's report, bound to its lease (TTL 10 s)
    /baton/<fleet>/audit/<time>-<id>         fleet audit entries (rollout steps, verdicts)
    /baton/<fleet>/election                  the coordinator's lock (lease-backed)

Names are validated so a model or node name can never address another key.
"""

from __future__ import annotations

import re

__all__ = ["FleetKeys", "check_name"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_name(kind: str, name: str) -> str:
    """``name`` if it is a valid fleet, model or node name; ``ValueError`` otherwise."""
    if not _NAME.match(name):
        raise ValueError(f"{kind} name {name!r} must be letters, digits, '_', '.' or '-'")
    return name


class FleetKeys:
    def __init__(self, fleet: str) -> None:
        self.root = f"/baton/{check_name('fleet', fleet)}/"

    def target(self, model: str) -> str:
        return f"{self.root}models/{check_name('model', model)}/target"

    @property
    def models(self) -> str:
        return f"{self.root}models/"

    def rollout(self, model: str) -> str:
        return f"{self.root}rollouts/{check_name('model', model)}"

    @property
    def rollouts(self) -> str:
        return f"{self.root}rollouts/"

    def node(self, node: str) -> str:
        return f"{self.root}nodes/{check_name('node', node)}"

    @property
    def nodes(self) -> str:
        return f"{self.root}nodes/"

    def audit(self, stamp: str) -> str:
        return f"{self.root}audit/{stamp}"

    @property
    def audits(self) -> str:
        return f"{self.root}audit/"

    @property
    def election(self) -> str:
        return f"{self.root}election"

    def model_of(self, key: str) -> str | None:
        """The model a ``models/<m>/target`` or ``rollouts/<m>`` key names."""
        for prefix in (self.models, self.rollouts):
            if key.startswith(prefix):
                return key[len(prefix) :].split("/", 1)[0]
        return None
