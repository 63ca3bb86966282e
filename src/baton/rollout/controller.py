"""The rollout controller: drives running rollouts from live metrics.

Every ``period`` seconds it reads the live windows of each running rollout's stable and
candidate versions, evaluates the gates (:func:`baton.rollout.gates.evaluate`) and advances the
schedule (:func:`baton.rollout.schedule.advance`); the manager applies any change (new weight,
promotion, rollback) and publishes it as a ``rollout`` event, which the audit log records. On
start-up, :func:`resume_from_audit` hands the manager every rollout the audit log shows as
unfinished, so a restarted server continues from the last recorded step.

    controller = RolloutController(manager, period=1.0)
    task = asyncio.create_task(controller.run())
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from baton.control.manager import Manager
from baton.control.rollouts import request_from
from baton.errors import Conflict
from baton.observe.audit import read_audit_log
from baton.rollout.gates import GateVerdict, WindowStats, evaluate
from baton.rollout.schedule import Rollout, RolloutStatus, advance

__all__ = ["RolloutController", "resume_from_audit"]

log = logging.getLogger("baton.rollout")


class RolloutController:
    def __init__(
        self, manager: Manager, period: float = 1.0, clock: Callable[[], float] = time.time
    ) -> None:
        self._manager = manager
        self.period = period
        self._clock = clock
        self.last_verdicts: dict[str, GateVerdict] = {}

    async def run(self) -> None:
        while True:
            try:
                self.step_all()
            except Exception:
                log.exception("rollout controller step failed")
            await asyncio.sleep(self.period)

    def step_all(self) -> None:
        """Evaluate every running rollout once."""
        now = self._clock()
        for name, m in self._manager.models().items():
            rollout = m.rollout
            if rollout is None or rollout.status is not RolloutStatus.RUNNING:
                continue
            stable, candidate = self.windows(name)
            if stable is None or candidate is None:
                continue  # one of the two versions is not serving (yet)
            verdict = evaluate(stable, candidate, m.rollout_gates)
            self.last_verdicts[name] = verdict
            new = advance(rollout, now, verdict)
            if new != rollout:
                self._manager.apply_rollout(
                    name, new, verdict=asdict(verdict), failed_gates=list(verdict.gates)
                )

    def windows(self, name: str) -> tuple[WindowStats | None, WindowStats | None]:
        m = self._manager.model(name)
        r = m.rollout
        if r is None:
            return None, None
        stats = []
        for v in (r.stable, r.candidate):
            record = m.versions.get(v)
            window = record.handle.window if record and record.handle else None
            stats.append(window.stats() if window is not None else None)
        return stats[0], stats[1]

    # ---- operator actions ---------------------------------------------------------------
    def act(self, name: str, action: str) -> Rollout:
        """``pause``, ``resume``, ``promote`` or ``abort`` the model's running rollout."""
        rollout = self._manager.model(name).rollout
        if rollout is None:
            raise Conflict(f"model '{name}' has no rollout in progress")
        new = {
            "pause": lambda r: r.pause(),
            "resume": lambda r: r.resume(self._clock()),
            "promote": lambda r: r.promote(),
            "abort": lambda r: r.abort(),
        }[action](rollout)
        self._manager.apply_rollout(name, new, operator=action)
        return new


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
