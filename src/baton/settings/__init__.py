"""Typed settings: one class for the server (``BATON_*`` environment, ``baton serve`` flags), one
per model (model.yaml).

- :mod:`~baton.settings.base` — strict frozen models and durations (``250ms``, ``30s``, ``2m``);
- :mod:`~baton.settings.model` — :class:`ModelSettings`, what model.yaml may say, with an example;
- :mod:`~baton.settings.sequence` — a stateful model's ``sequence:`` section;
- :mod:`~baton.settings.server` — :class:`ServerSettings`.

Durations (``drain_timeout``, ``interval``, ``min_interval``, ``max_defer``, and the server's
``poll_interval``, ``shutdown_timeout``, ``rollout_period``) take seconds as a number or a string
with a unit: ``250ms``, ``30s``, ``2m``, ``1h`` — the same as the command line
(:func:`parse_duration`).
"""

from __future__ import annotations

from baton.settings.base import Duration, parse_duration
from baton.settings.model import (
    GateSettings,
    GoldenSettings,
    MemorySettings,
    ModelSettings,
    OnnxSettings,
    PythonSettings,
    RolloutSettings,
    TensorflowSettings,
    TensorOverride,
    TorchSettings,
    UpdateLimitSettings,
    VersionPolicy,
    WarmupSettings,
    read_settings,
)
from baton.settings.sequence import SequenceSettings, StateSettings
from baton.settings.server import ServerSettings

__all__ = [
    "Duration",
    "GateSettings",
    "GoldenSettings",
    "MemorySettings",
    "ModelSettings",
    "OnnxSettings",
    "PythonSettings",
    "RolloutSettings",
    "SequenceSettings",
    "ServerSettings",
    "StateSettings",
    "TensorOverride",
    "TensorflowSettings",
    "TorchSettings",
    "UpdateLimitSettings",
    "VersionPolicy",
    "WarmupSettings",
    "parse_duration",
    "read_settings",
]
