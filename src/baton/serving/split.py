"""Traffic split points: where on [0, 1) a request falls, for weighted canary routing.

A request goes to the candidate when its point is below the candidate's weight. With a session
key the point is a hash of the key, so a session always lands on the same side, and raising the
weight from w1 to w2 moves exactly the sessions in [w1, w2) to the candidate — none move back.
Without a key, points come from a golden-ratio (Weyl) sequence: the share of requests below any
weight w is within O(log n / n) of w after n requests, so traffic matches the configured
weight exactly rather than only on average.

    points = WeylSequence()
    candidate = split_point(session_key, points) < weight
"""

from __future__ import annotations

import hashlib

__all__ = ["WeylSequence", "key_point", "split_point"]

_GOLDEN = 0.6180339887498949  # 1 / φ: the most evenly spreading irrational step
_SCALE = float(2**64)


def key_point(key: str) -> float:
    """A stable point in [0, 1) for a session key (the same on every server and restart)."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


class WeylSequence:
    """0, 1/φ, 2/φ, ... mod 1: evenly spread points for requests without a session key.

    Not thread-safe; use from the event loop only (as the request path does)."""

    __slots__ = ("_x",)

    def __init__(self, start: float = 0.0) -> None:
        self._x = start

    def next(self) -> float:
        x = self._x
        self._x = (x + _GOLDEN) % 1.0
        return x


def split_point(key: str | None, sequence: WeylSequence) -> float:
    """The request's point: from its session key when it has one, else the next in sequence."""
    return key_point(key) if key else sequence.next()
