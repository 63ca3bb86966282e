"""What a failed load means for its model, beyond the FAILED state itself.

- A pin (or rollback) that waited for the version is refused: the pin goes back to what it was.
- If the version policy had chosen the version, it now falls back to the next newest usable
  one (see :func:`baton.control.policy.select_aspired`); the ``fallback`` event says to what.

:func:`consequences` applies the first to the record and returns the events to publish, as
``(kind, fields)`` pairs; it does no I/O.
"""

from __future__ import annotations

from baton.control.records import ModelRecord

__all__ = ["consequences"]


def consequences(
    m: ModelRecord, version: int, reason: str, chosen_before: bool
) -> list[tuple[str, dict]]:
    """After ``version`` of ``m`` FAILED with ``reason`` (``chosen_before``: the version policy
    had aspired to it)."""
    events = []
    pending = m.pending_pin
    if pending is not None and pending.version == version:
        m.pinned, m.pending_pin = pending.previous, None
        events.append(("pin", {
            "version": version, "state": "refused", "reason": reason,
            "message": f"{pending.action} to version {version} refused: it failed to load "
            f"({reason}); version {m.default_version()} keeps serving",
        }))  # fmt: skip
    aspired = sorted(m.aspired())
    if chosen_before and version not in aspired and m.offered and not m.disabled:
        serving = m.default_version()
        instead = ", ".join(map(str, aspired))
        message = (
            f"version {version} FAILED ({reason}); "
            + (f"the version policy falls back to version {instead}" if aspired
               else "no other version to fall back to")
            + (f"; version {serving} keeps serving" if serving is not None else "")
        )  # fmt: skip
        events.append(("fallback", {"version": version, "reason": reason, "message": message,
                                    "data": {"aspired": aspired}}))  # fmt: skip
    return events
