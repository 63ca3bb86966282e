"""One version's live sequences and their implicit state: the bounded per-version store.

A stateful model declares its state tensors in model.yaml (``sequence.state``, see
:class:`baton.settings.SequenceSettings`). The client never sends or sees them: before each
request of a sequence the store *feeds* the sequence's state to the model's state inputs, and
after it *keeps* what the model returned on the state outputs (and takes them out of the
answer). A START begins from the declared initial value.

    store = VersionSequences.build("m", 2, settings.sequence, full_signature, version_dir)
    public = store.public_signature(full_signature)   # what clients see and send
    inputs = {**request.inputs, **store.feed(sequence.state)}
    outputs = runtime.predict(inputs, None)
    sequence.state = store.keep(outputs)                # state outputs leave ``outputs``

At a swap in ``migrate`` mode the new version's store :meth:`converts <VersionSequences.convert>`
a sequence's state from the old version's: through the version's ``migrate_hook`` when it has
one, else tensor by tensor by name (names, dtypes and shapes must match). The store counts live
sequences and their bytes; beyond ``max_sequences`` a START is refused, never a live sequence
evicted. Use from the event loop only.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from baton.errors import BatonError, TooManyRequests, VersionFailed
from baton.settings import SequenceSettings
from baton.types import Signature, numpy_dtype

__all__ = ["MigrateHook", "StateSpec", "VersionSequences"]

State = dict[str, np.ndarray]  # state input name -> one sequence's value
MigrateHook = Callable[[State, int, int], Mapping[str, np.ndarray]]


@dataclass(frozen=True, slots=True)
class StateSpec:
    """One state tensor as this version feeds it: ``batched`` models take it with a leading 1."""

    input: str
    output: str
    datatype: str
    shape: tuple[int, ...]
    initial: np.ndarray
    batched: bool

    @property
    def nbytes(self) -> int:
        return int(self.initial.nbytes)


class VersionSequences:
    """The state store of one loaded version of a stateful model (see the module docstring)."""

    def __init__(
        self,
        model: str,
        version: int,
        specs: tuple[StateSpec, ...],
        settings: SequenceSettings,
        hook: MigrateHook | None = None,
    ) -> None:
        self.model = model
        self.version = version
        self.specs = specs
        self.settings = settings
        self.hook = hook
        self.live = 0  # sequences whose state lives here
        self.state_bytes = sum(s.nbytes for s in specs)  # one sequence's state
        self.state_outputs: tuple[str, ...] = tuple(s.output for s in specs)
        #: a request of this version's sequences is a batch of one (its state gets a batch
        #: dimension); checked per request
        self.batched = any(s.batched for s in specs)

    # ---- building ------------------------------------------------------------------------
    @staticmethod
    def build(
        model: str,
        version: int,
        settings: SequenceSettings,
        signature: Signature,
        version_dir: Path | None,
    ) -> VersionSequences:
        """The store for a version with ``signature`` (the runtime's, state tensors included);
        the migrate hook is imported from ``version_dir``. Raises :class:`VersionFailed`
        (``bad_sequence_config``) when the declared state does not fit the model."""
        specs, problems = [], []
        for s in settings.state:
            declared = f"state {s.input} -> {s.output}"
            inp, out = signature.input(s.input), signature.output(s.output)
            if inp is None or out is None:
                missing = s.input if inp is None else s.output
                problems.append(f"{declared}: the model has no tensor '{missing}'")
                continue
            batched = len(inp.shape) == len(s.shape) + 1
            for t in (inp, out):
                inner = t.shape[1:] if batched else t.shape
                if t.datatype != s.dtype:
                    problems.append(f"{declared}: '{t.name}' is {t.datatype}, not {s.dtype}")
                elif (
                    len(inner) != len(s.shape)
                    or any(d not in (-1, w) for d, w in zip(inner, s.shape, strict=True))
                    or (batched and t.shape[0] not in (-1, 1))
                ):
                    problems.append(
                        f"{declared}: '{t.name}' has shape {list(t.shape)}, which does not "
                        f"hold a state of shape {list(s.shape)}"
                    )
            fill = 0 if s.initial == "zeros" else s.initial
            with np.errstate(invalid="ignore", over="ignore"):
                initial = np.array(fill).astype(numpy_dtype(s.dtype))
            if not (initial == fill or (np.isnan(fill) and np.isnan(initial))):
                problems.append(f"{declared}: initial {fill!r} is not a {s.dtype} value")
            initial = np.full(s.shape, initial, initial.dtype)
            specs.append(StateSpec(s.input, s.output, s.dtype, s.shape, initial, batched))
        if problems:
            raise VersionFailed("bad_sequence_config", "; ".join(problems))
        hook = _import_hook(version_dir, settings.migrate_hook) if settings.migrate_hook else None
        return VersionSequences(model, version, tuple(specs), settings, hook)

    def public_signature(self, signature: Signature) -> Signature:
        """``signature`` without the state tensors: what clients send and receive."""
        inputs = {s.input for s in self.specs}
        outputs = {s.output for s in self.specs}
        return Signature(
            tuple(t for t in signature.inputs if t.name not in inputs),
            tuple(t for t in signature.outputs if t.name not in outputs),
        )

    # ---- admission ----------------------------------------------------------------------
    def initial(self) -> State:
        return {s.input: s.initial.copy() for s in self.specs}

    def admit(self) -> None:
        """Count one more live sequence here, or refuse it (429) at ``max_sequences``."""
        limit = self.settings.max_sequences
        if self.live >= limit:
            raise TooManyRequests(
                f"model '{self.model}' version {self.version} holds {self.live} live sequences, "
                f"its limit (sequence.max_sequences {limit}); end or let some idle out first"
            )
        self.live += 1

    def release(self) -> None:
        self.live -= 1

    @property
    def bytes(self) -> int:
        """Memory held by live sequences' state."""
        return self.live * self.state_bytes

    # ---- one step -----------------------------------------------------------------------
    def feed(self, state: State) -> dict[str, np.ndarray]:
        """The model inputs carrying ``state``."""
        return {s.input: state[s.input][np.newaxis] if s.batched else state[s.input]
                for s in self.specs}  # fmt: skip

    def keep(self, outputs: dict[str, np.ndarray]) -> State:
        """The new state, taken (and removed) from ``outputs``; raises :class:`BatonError`
        when the model returned a state that does not fit its declaration."""
        state = {}
        for s in self.specs:
            value = outputs.pop(s.output, None)
            if value is not None and s.batched and value.shape[:1] == (1,):
                value = value[0]
            if value is None or value.shape != s.shape:
                got = "nothing" if value is None else f"shape {list(value.shape)}"
                raise BatonError(
                    f"model '{self.model}' version {self.version} returned {got} for state "
                    f"output '{s.output}', declared {list(s.shape)}; the state is unchanged"
                )
            # a copy: ``value`` may be a row of a whole batch's output, which must not stay alive
            state[s.input] = np.array(value, s.initial.dtype)
        return state

    # ---- migration ----------------------------------------------------------------------
    def convert(self, state: State, source: VersionSequences) -> State:
        """``state`` of a sequence on ``source``'s version, as this version's state. Raises
        ``ValueError`` saying why it cannot be carried over (the sequence then stays)."""
        if self.hook is not None:
            try:
                result = self.hook(
                    {k: v.copy() for k, v in state.items()}, source.version, self.version
                )
            except Exception as exc:
                raise ValueError(f"migrate hook failed: {type(exc).__name__}: {exc}") from None
            if not isinstance(result, Mapping):
                raise ValueError(f"migrate hook returned {type(result).__name__}, not a dict")
        else:
            result = state
        converted = {}
        for s in self.specs:
            value = result.get(s.input)
            if value is None:
                via = "the migrate hook" if self.hook else f"version {source.version}"
                raise ValueError(f"{via} has no state '{s.input}' for version {self.version}")
            value = np.asarray(value)
            if value.shape != s.shape or value.dtype != s.initial.dtype:
                raise ValueError(
                    f"state '{s.input}' is {value.dtype}{list(value.shape)}, version "
                    f"{self.version} keeps {s.initial.dtype}{list(s.shape)}"
                )
            converted[s.input] = value.copy()
        return converted


def _import_hook(version_dir: Path | None, name: str) -> MigrateHook:
    """``migrate`` from the version's hook file (read from the verified copy when the version
    has a manifest; its name is signed with the code settings), run from the bytes read: no
    bytecode is written and the module is registered only while its code runs."""
    path = version_dir / name if version_dir is not None else None
    if path is None or not path.is_file() or path.is_symlink():
        raise VersionFailed("bad_sequence_config", f"migrate_hook {name} is not in the version")
    module = types.ModuleType(f"baton_migrate_hook_{name[:-3]}")
    module.__file__ = str(path)
    sys.modules[module.__name__] = module  # while it runs (dataclasses look their module up)
    try:
        code = compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
        exec(code, module.__dict__)  # verified code
    except Exception as exc:
        raise VersionFailed(
            "bad_sequence_config", f"migrate_hook {name} failed to import: {exc}"
        ) from None
    finally:
        sys.modules.pop(module.__name__, None)
    hook = getattr(module, "migrate", None)
    if not callable(hook):
        raise VersionFailed("bad_sequence_config", f"migrate_hook {name} defines no migrate()")
    return hook
