"""Signature contracts: may a new version replace the serving one, and does a request fit?

Pure functions over :class:`baton.types.Signature`; each returns or raises with a message that
names the tensor and the mismatch.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from baton.errors import InvalidRequest
from baton.settings import TensorOverride
from baton.types import Signature, TensorSpec

__all__ = ["apply_overrides", "batching_obstacle", "check_inputs", "incompatibilities"]


def _dims_accept(declared: tuple[int, ...], actual: tuple[int, ...]) -> bool:
    return len(declared) == len(actual) and all(
        d == -1 or d == a for d, a in zip(declared, actual, strict=True)
    )


def incompatibilities(old: Signature, new: Signature) -> list[str]:
    """Why ``new`` cannot transparently replace ``old`` (empty list = compatible).

    Clients of ``old`` must keep working: the same input names, dtypes and ranks, and every input
    the old version accepted still accepted (a dimension may become dynamic, not fixed); every
    old output still produced with the same dtype and rank (new outputs may be added).
    """
    problems: list[str] = []
    old_in = {t.name: t for t in old.inputs}
    new_in = {t.name: t for t in new.inputs}
    for name in sorted(old_in.keys() - new_in.keys()):
        problems.append(f"input '{name}' was removed")
    for name in sorted(new_in.keys() - old_in.keys()):
        problems.append(f"new required input '{name}'")
    for name in sorted(old_in.keys() & new_in.keys()):
        o, n = old_in[name], new_in[name]
        if o.datatype != n.datatype:
            problems.append(f"input '{name}' datatype {o.datatype} → {n.datatype}")
        elif not _dims_accept(n.shape, o.shape):
            problems.append(f"input '{name}' shape {list(o.shape)} → {list(n.shape)}")
    new_out = {t.name: t for t in new.outputs}
    for o in old.outputs:
        n = new_out.get(o.name)
        if n is None:
            problems.append(f"output '{o.name}' was removed")
        elif o.datatype != n.datatype:
            problems.append(f"output '{o.name}' datatype {o.datatype} → {n.datatype}")
        elif len(o.shape) != len(n.shape) or not all(
            a == b or -1 in (a, b) for a, b in zip(o.shape, n.shape, strict=True)
        ):
            problems.append(f"output '{o.name}' shape {list(o.shape)} → {list(n.shape)}")
    return problems


def apply_overrides(
    signature: Signature, inputs: tuple[TensorOverride, ...], outputs: tuple[TensorOverride, ...]
) -> Signature:
    """The signature with ``model.yaml`` overrides applied; unknown names raise ``ValueError``."""

    def patch(specs: tuple[TensorSpec, ...], overrides: tuple[TensorOverride, ...], kind: str):
        by_name = {o.name: o for o in overrides}
        unknown = by_name.keys() - {t.name for t in specs}
        if unknown:
            raise ValueError(f"model.yaml overrides unknown {kind} {sorted(unknown)}")
        return tuple(_override(t, by_name.get(t.name)) for t in specs)

    return Signature(
        patch(signature.inputs, inputs, "input"), patch(signature.outputs, outputs, "output")
    )


def _override(spec: TensorSpec, override: TensorOverride | None) -> TensorSpec:
    if override is None:
        return spec
    return TensorSpec(
        spec.name,
        override.datatype or spec.datatype,
        tuple(override.shape) if override.shape is not None else spec.shape,
    )


def check_inputs(
    specs: Mapping[str, TensorSpec], inputs: Mapping[str, np.ndarray], datatypes: Mapping[str, str]
) -> None:
    """Raise :class:`InvalidRequest` unless the inputs match the version's declared inputs."""
    for name, array in inputs.items():
        spec = specs.get(name)
        if spec is None:
            raise InvalidRequest(f"unexpected input '{name}'; the model takes {sorted(specs)}")
        if datatypes[name] != spec.datatype:
            raise InvalidRequest(f"input '{name}' must be {spec.datatype}, got {datatypes[name]}")
        if not _dims_accept(spec.shape, array.shape):
            raise InvalidRequest(
                f"input '{name}' must have shape {list(spec.shape)} (-1 = any), "
                f"got {list(array.shape)}"
            )
    if len(inputs) != len(specs):
        missing = sorted(specs.keys() - inputs.keys())
        raise InvalidRequest(f"missing input(s) {missing}")


def batching_obstacle(signature: Signature) -> str | None:
    """Why requests to this signature cannot be batched on their first dimension, or ``None``."""
    for kind, specs in (("input", signature.inputs), ("output", signature.outputs)):
        for t in specs:
            if not t.shape or t.shape[0] != -1:
                return f"{kind} '{t.name}' has shape {list(t.shape)}: no dynamic first dimension"
    return None


def structure_problems(old: dict | None, new: dict | None) -> tuple[str, list[str]] | None:
    """(reason, problems) when a weights-only version does not keep the serving version's
    structure (see :meth:`baton.runtimes.base.Runtime.structure`), else ``None``."""
    if old is None or new is None:
        return None
    old_w, new_w = old.get("weights") or {}, new.get("weights") or {}
    problems = [f"weight '{n}' is missing" for n in sorted(old_w.keys() - new_w.keys())]
    problems += [f"weight '{n}' is new" for n in sorted(new_w.keys() - old_w.keys())]
    problems += [
        f"weight '{n}' has shape {new_w[n]}, was {old_w[n]}"
        for n in sorted(old_w.keys() & new_w.keys())
        if list(old_w[n]) != list(new_w[n])
    ]
    if problems:
        return "incompatible_weights", problems
    if old.get("labels") != new.get("labels"):

        def show(labels):
            if labels is None:
                return "none"
            return f"{len(labels)} classes {labels[:5]}{'...' if len(labels) > 5 else ''}"

        return "labels_changed", [
            f"labels are {show(new.get('labels'))}, were {show(old.get('labels'))}"
        ]
    return None
