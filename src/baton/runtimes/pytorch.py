"""PyTorch (``baton[torch]``): TorchScript, ``torch.export`` programs, and weights-only versions.

- ``model.pt``: a TorchScript module (``torch.jit.save``); inputs and outputs are declared in
  model.yaml, since TorchScript does not record them.
- ``model.pt2``: a ``torch.export`` program; its signature comes from the program (dimensions
  exported as dynamic become -1), named ``input_<i>`` / ``output_<i>`` unless model.yaml
  declares names.
- ``weights.safetensors`` or ``weights.pt`` (a state_dict), for the architecture model.yaml
  names (``torch: {module: "net.py:Net", kwargs: {...}}``): a fresh instance gets the weights,
  strictly (every tensor present, of its shape). ``labels.txt`` (one class per line) is part of
  the version's structure: the loader refuses a version whose weight names and shapes or labels
  differ from the serving version's (:meth:`TorchRuntime.structure`).

Inputs are passed positionally in signature order; a tensor, tuple, list or dict result maps to
the outputs in order. Prediction runs under ``torch.inference_mode``.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from baton.errors import VersionFailed
from baton.runtimes.base import Runtime
from baton.runtimes.common import declared_signature, import_class, require
from baton.settings import ModelSettings
from baton.types import Signature, TensorSpec, datatype_of

__all__ = ["TorchRuntime"]

FILES = {"torchscript": "model.pt", "torch_export": "model.pt2"}
WEIGHTS = ("weights.safetensors", "weights.pt")


class TorchRuntime(Runtime):
    platform = "pytorch_libtorch"

    def __init__(
        self,
        path: Path,
        settings: ModelSettings,
        kind: str,
        code_dirs: tuple[Path, ...] | None = None,
    ) -> None:
        self.path, self.settings, self.kind = path, settings, kind
        self.code_dirs = code_dirs if code_dirs is not None else (path, path.parent)
        self._module = None
        self._signature: Signature | None = None
        self._structure: dict | None = None

    def load(self) -> None:
        torch = require("torch", "torch", "PyTorch")
        torch.set_num_threads(self.settings.torch.threads)
        try:
            if self.kind == "torchscript":
                module = torch.jit.load(str(self.path / FILES["torchscript"]), map_location="cpu")
                signature = declared_signature(self.settings, "TorchScript")
            elif self.kind == "torch_export":
                program = torch.export.load(str(self.path / FILES["torch_export"]))
                module, signature = program.module(), self._exported_signature(program)
            else:
                module = self._module_with_weights(torch)
                signature = declared_signature(self.settings, "Weights-only PyTorch")
        except VersionFailed:
            raise
        except Exception as exc:
            raise VersionFailed(
                "load_error", f"PyTorch could not load {self.path}: {exc}"
            ) from None
        if self.kind != "torch_export":  # exported programs are already in inference form
            module.eval()
        self._module, self._signature = module, signature

    def _module_with_weights(self, torch):
        cfg = self.settings.torch
        if cfg.module is None:
            raise VersionFailed(
                "bad_config", "weights-only versions need torch.module in model.yaml"
            )
        cls = import_class(cfg.module, list(self.code_dirs))
        module = cls(**cfg.kwargs)
        file = next((self.path / n for n in WEIGHTS if (self.path / n).is_file()), None)
        if file is None:
            raise VersionFailed("missing_file", f"no {' or '.join(WEIGHTS)} in {self.path}")
        if file.suffix == ".safetensors":
            state = require("safetensors.torch", "torch", "safetensors weights").load_file(
                str(file)
            )
        else:
            state = torch.load(str(file), map_location="cpu", weights_only=True)
        labels_file = self.path / "labels.txt"
        labels = labels_file.read_text().splitlines() if labels_file.is_file() else None
        self._structure = {
            "weights": {name: list(t.shape) for name, t in state.items()},
            "labels": labels,
        }
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise VersionFailed(
                "incompatible_weights", f"weights do not fit {cfg.module}: {exc}"
            ) from None
        return module

    def _exported_signature(self, program) -> Signature:
        declared_in = {t.name: t for t in self.settings.inputs}
        declared_out = [t.name for t in self.settings.outputs]
        inputs = []
        placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
        for i, name in enumerate(program.graph_signature.user_inputs):
            value = placeholders[name].meta["val"]
            shape = tuple(d if isinstance(d, int) else -1 for d in value.shape)
            spec_name = list(declared_in)[i] if i < len(declared_in) else f"input_{i}"
            inputs.append(
                TensorSpec(spec_name, datatype_of(np.empty(0, _np_dtype(value.dtype))), shape)
            )
        outputs = []
        output_node = next(n for n in program.graph.nodes if n.op == "output")
        for i, node in enumerate(output_node.args[0]):
            value = node.meta["val"]
            shape = tuple(d if isinstance(d, int) else -1 for d in value.shape)
            spec_name = declared_out[i] if i < len(declared_out) else f"output_{i}"
            outputs.append(
                TensorSpec(spec_name, datatype_of(np.empty(0, _np_dtype(value.dtype))), shape)
            )
        return Signature(tuple(inputs), tuple(outputs))

    def structure(self) -> dict | None:
        return self._structure

    def predict(
        self, inputs: dict[str, np.ndarray], outputs: Sequence[str] | None
    ) -> dict[str, np.ndarray]:
        import torch

        sig = self.signature()
        args = [torch.from_numpy(np.ascontiguousarray(inputs[t.name])) for t in sig.inputs]
        with torch.inference_mode():
            result = self._module(*args)
        if isinstance(result, dict):
            result = list(result.values())
        elif not isinstance(result, (tuple, list)):
            result = [result]
        names = [t.name for t in sig.outputs]
        if len(result) != len(names):
            raise RuntimeError(f"the model returned {len(result)} outputs, {len(names)} declared")
        wanted = set(outputs) if outputs is not None else set(names)
        return {
            n: r.detach().cpu().numpy() for n, r in zip(names, result, strict=True) if n in wanted
        }

    def unload(self) -> None:
        self._module = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass


def _np_dtype(torch_dtype) -> np.dtype:
    import torch

    return torch.empty(0, dtype=torch_dtype).numpy().dtype
