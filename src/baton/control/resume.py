"""Resuming rollouts after a restart, from the audit log.

A ``rollout`` event carries everything needed to continue (:func:`baton.control.rollouts.describe`):
the last one recorded for a model says whether its rollout was still running or paused, and at
which step. :func:`resume_from_audit` hands each unfinished one to the manager, which starts it
again once the model's stable and candidate versions are SERVING.
"""

from __future__ import annotations

import logging
from pathlib import Path

from baton.control.manager import Manager
from baton.control.rollouts import request_from
from baton.observe.audit import read_audit_log
from baton.rollout.schedule import RolloutStatus

__all__ = ["resume_from_audit"]

log = logging.getLogger("baton.rollout")


def resume_from_audit(manager: Manager, path: Path) -> list[str]:
    """Restore every rollout the audit log shows as unfinished; returns the models."""
    entries, _ = read_audit_log(path)
    last: dict[str, dict] = {}
    for entry in entries:
        if entry.get("kind") == "rollout":
            last[entry["model"]] = entry["data"]
    resumed = []
    for model, data in last.items():
        if data.get("status") in (RolloutStatus.RUNNING, RolloutStatus.PAUSED):
            manager.restore_rollout(model, request_from(data))
            resumed.append(model)
            log.info("resuming the rollout of %s to version %s at step %s",
                     model, data["candidate"], data["step"])  # fmt: skip
    return resumed
