import numpy as np
import pytest

from baton.errors import InvalidRequest
from baton.loading.contract import (
    apply_overrides,
    check_inputs,
    incompatibilities,
    structure_problems,
)
from baton.settings import TensorOverride
from baton.types import Signature, TensorSpec


def sig(inputs, outputs):
    return Signature(
        tuple(TensorSpec(n, d, s) for n, d, s in inputs),
        tuple(TensorSpec(n, d, s) for n, d, s in outputs),
    )


BASE = sig([("x", "FP32", (-1, 4))], [("y", "FP32", (-1, 4))])


@pytest.mark.parametrize(
    ("new", "problems"),
    [
        (BASE, []),
        (sig([("x", "FP32", (-1, -1))], [("y", "FP32", (-1, 4))]), []),  # input widened
        (sig([("x", "FP32", (-1, 4))], [("y", "FP32", (-1, 4)), ("z", "FP32", (1,))]), []),
        (sig([("x", "FP32", (8, 4))], [("y", "FP32", (-1, 4))]), ["input 'x' shape"]),
        (sig([("x", "FP32", (-1, 5))], [("y", "FP32", (-1, 4))]), ["input 'x' shape"]),
        (sig([("x", "FP64", (-1, 4))], [("y", "FP32", (-1, 4))]), ["input 'x' datatype"]),
        (sig([("x", "FP32", (-1, 4, 1))], [("y", "FP32", (-1, 4))]), ["input 'x' shape"]),
        (
            sig([("a", "FP32", (-1, 4))], [("y", "FP32", (-1, 4))]),
            ["input 'x' was removed", "new required input 'a'"],
        ),
        (sig([("x", "FP32", (-1, 4))], [("z", "FP32", (-1, 4))]), ["output 'y' was removed"]),
        (sig([("x", "FP32", (-1, 4))], [("y", "INT64", (-1, 4))]), ["output 'y' datatype"]),
        (sig([("x", "FP32", (-1, 4))], [("y", "FP32", (-1, 5))]), ["output 'y' shape"]),
    ],
)
def test_incompatibilities(new, problems):
    found = incompatibilities(BASE, new)
    assert len(found) == len(problems)
    for text, expected in zip(found, problems, strict=True):
        assert text.startswith(expected)


def test_overrides_replace_shape_and_datatype():
    out = apply_overrides(
        BASE,
        (TensorOverride(name="x", shape=(8, 4)),),
        (TensorOverride(name="y", datatype="FP16"),),
    )
    assert out.inputs[0] == TensorSpec("x", "FP32", (8, 4))
    assert out.outputs[0] == TensorSpec("y", "FP16", (-1, 4))
    with pytest.raises(ValueError, match="unknown input"):
        apply_overrides(BASE, (TensorOverride(name="nope"),), ())


SPECS = {"x": TensorSpec("x", "FP32", (-1, 4))}


@pytest.mark.parametrize(
    ("inputs", "datatypes", "message"),
    [
        ({"x": np.zeros((3, 4), np.float32)}, {"x": "FP32"}, None),
        ({"x": np.zeros((3, 5), np.float32)}, {"x": "FP32"}, "must have shape"),
        ({"x": np.zeros((4,), np.float32)}, {"x": "FP32"}, "must have shape"),
        ({"x": np.zeros((1, 4), np.int32)}, {"x": "INT32"}, "must be FP32, got INT32"),
        ({"q": np.zeros((1, 4), np.float32)}, {"q": "FP32"}, "unexpected input 'q'"),
        ({}, {}, "missing input"),
    ],
)
def test_check_inputs(inputs, datatypes, message):
    if message is None:
        check_inputs(SPECS, inputs, datatypes)
    else:
        with pytest.raises(InvalidRequest, match=message):
            check_inputs(SPECS, inputs, datatypes)


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        (None, {"weights": {"w": [4]}}, None),  # the serving version has no structure
        ({"weights": {"w": [4]}, "labels": ["a"]}, {"weights": {"w": [4]}, "labels": ["a"]}, None),
        ({"weights": {"w": [4]}}, {"weights": {"w": [8]}}, "incompatible_weights"),
        ({"weights": {"w": [4]}}, {"weights": {"v": [4]}}, "incompatible_weights"),
        ({"weights": {"w": [4]}}, {"weights": {"w": [4], "extra": [1]}}, "incompatible_weights"),
        ({"weights": {}, "labels": ["crack", "dent"]}, {"weights": {}, "labels": ["stop"]},
         "labels_changed"),
        ({"weights": {}, "labels": ["a"]}, {"weights": {}, "labels": None}, "labels_changed"),
    ],
)  # fmt: skip
def test_structure_problems(old, new, reason):
    result = structure_problems(old, new)
    assert (result[0] if result else None) == reason
