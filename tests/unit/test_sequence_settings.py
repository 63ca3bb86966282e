"""The ``sequence`` section of model.yaml and what it adds to the code config."""

import pytest
from pydantic import ValidationError

from baton.settings import ModelSettings, SequenceSettings, StateSettings

H = {"input": "h_in", "output": "h_out", "shape": [4]}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (H, {"dtype": "FP32", "shape": (4,), "initial": "zeros"}),
        ({**H, "dtype": "INT64"}, {"dtype": "INT64"}),
        ({**H, "dtype": "BOOL"}, {"dtype": "BOOL"}),
        ({**H, "dtype": "FP16"}, {"dtype": "FP16"}),
        ({**H, "dtype": "UINT8"}, {"dtype": "UINT8"}),
        ({**H, "shape": []}, {"shape": ()}),  # a scalar state
        ({**H, "shape": [2, 3]}, {"shape": (2, 3)}),
        ({**H, "initial": 1.5}, {"initial": 1.5}),
        ({**H, "initial": 0}, {"initial": 0.0}),
        ({**H, "initial": -2}, {"initial": -2.0}),
        ({**H, "initial": "zeros"}, {"initial": "zeros"}),
    ],
)
def test_state_settings_accepts(fields, expected):
    parsed = StateSettings(**fields)
    assert (parsed.input, parsed.output) == ("h_in", "h_out")
    for name, value in expected.items():
        assert getattr(parsed, name) == value


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({**H, "dtype": "BYTES"}, "must be a numeric v2 datatype"),
        ({**H, "dtype": "BF16"}, "must be a numeric v2 datatype"),
        ({**H, "dtype": "float32"}, "must be a numeric v2 datatype"),
        ({**H, "dtype": "fp32"}, "must be a numeric v2 datatype"),
        ({**H, "dtype": ""}, "must be a numeric v2 datatype"),
        ({**H, "shape": [0]}, "must have fixed positive dimensions"),
        ({**H, "shape": [-1]}, "must have fixed positive dimensions"),
        ({**H, "shape": [4, -1]}, "must have fixed positive dimensions"),
        ({**H, "shape": [4, 0]}, "must have fixed positive dimensions"),
        ({**H, "initial": "ones"}, "initial"),
        ({**H, "size": 4}, "size"),  # unknown field
        ({"input": "h_in", "output": "h_out"}, "shape"),
        ({"output": "h_out", "shape": [4]}, "input"),
        ({"input": "h_in", "shape": [4]}, "output"),
    ],
)
def test_state_settings_refuses(fields, message):
    with pytest.raises(ValidationError, match=message):
        StateSettings(**fields)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {},
            {
                "state": (),
                "idle_timeout": 60.0,
                "max_sequences": 10_000,
                "swap": "drain",
                "drain_timeout": 300.0,
                "migrate_hook": None,
            },
        ),
        ({"idle_timeout": "250ms"}, {"idle_timeout": 0.25}),
        ({"idle_timeout": "2m"}, {"idle_timeout": 120.0}),
        ({"drain_timeout": 0}, {"drain_timeout": 0.0}),
        ({"drain_timeout": "1h"}, {"drain_timeout": 3600.0}),
        ({"max_sequences": 1}, {"max_sequences": 1}),
        ({"swap": "migrate"}, {"swap": "migrate"}),
        ({"migrate_hook": "migrate.py"}, {"migrate_hook": "migrate.py"}),
        ({"migrate_hook": "my_hook_v2.py"}, {"migrate_hook": "my_hook_v2.py"}),
        (
            {"state": [H, {"input": "c_in", "output": "c_out", "shape": [2], "dtype": "INT64"}]},
            {
                "state": (
                    StateSettings(**H),
                    StateSettings(input="c_in", output="c_out", shape=(2,), dtype="INT64"),
                )
            },
        ),
        # an input of one state may share a name with the output of another
        (
            {"state": [H, {"input": "h_out", "output": "h_in", "shape": [4]}]},
            {
                "state": (
                    StateSettings(**H),
                    StateSettings(input="h_out", output="h_in", shape=(4,)),
                )
            },
        ),
    ],
)
def test_sequence_settings_accepts(fields, expected):
    parsed = SequenceSettings(**fields)
    for name, value in expected.items():
        assert getattr(parsed, name) == value


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"idle_timeout": 0}, "idle_timeout"),
        ({"idle_timeout": -1}, "idle_timeout"),
        ({"idle_timeout": "soon"}, "is not a duration"),
        ({"max_sequences": 0}, "max_sequences"),
        ({"drain_timeout": -1}, "drain_timeout"),
        ({"drain_timeout": True}, "is not a duration"),
        ({"swap": "copy"}, "swap"),
        ({"swap": None}, "swap"),
        ({"evict": True}, "evict"),
        (
            {"state": [H, {**H, "output": "other"}]},
            r"sequence state names an input twice: \['h_in', 'h_in'\]",
        ),
        (
            {"state": [H, {**H, "input": "other"}]},
            r"sequence state names an output twice: \['h_out', 'h_out'\]",
        ),
        ({"migrate_hook": "migrate.txt"}, r"must be a \.py file name in the version"),
        ({"migrate_hook": "migrate"}, r"must be a \.py file name in the version"),
        ({"migrate_hook": "hooks/migrate.py"}, r"must be a \.py file name in the version"),
        ({"migrate_hook": "../migrate.py"}, r"must be a \.py file name in the version"),
        ({"migrate_hook": "/tmp/migrate.py"}, r"must be a \.py file name in the version"),
        ({"migrate_hook": ".migrate.py"}, r"must be a \.py file name in the version"),
        ({"migrate_hook": ".py"}, r"must be a \.py file name in the version"),
    ],
)
def test_sequence_settings_refuses(fields, message):
    with pytest.raises(ValidationError, match=message):
        SequenceSettings(**fields)


def test_settings_are_frozen():
    parsed = SequenceSettings(state=[H])
    with pytest.raises(ValidationError):
        parsed.max_sequences = 5  # type: ignore[misc]


def test_model_settings_read_a_sequence_section():
    settings = ModelSettings(
        sequence={"state": [H], "idle_timeout": "30s", "swap": "migrate", "migrate_hook": "m.py"}
    )
    assert settings.sequence == SequenceSettings(
        state=(StateSettings(**H),), idle_timeout=30.0, swap="migrate", migrate_hook="m.py"
    )
    assert ModelSettings().sequence is None
    with pytest.raises(ValidationError, match=r"must be a \.py file name"):
        ModelSettings(sequence={"migrate_hook": "m.sh"})


# ---- code_config -------------------------------------------------------------------------

BASE = {"backend": None, "python": None, "torch_module": None}


@pytest.mark.parametrize(
    ("sequence", "expected"),
    [
        (None, BASE),
        ({}, BASE),
        ({"state": [H], "swap": "migrate"}, BASE),  # no hook: the manifest of old still matches
        (
            {"state": [H], "migrate_hook": "migrate.py"},
            {"sequence_migrate_hook": "migrate.py", **BASE},
        ),
    ],
)
def test_code_config_lists_a_migrate_hook_only_when_set(sequence, expected):
    kwargs = {} if sequence is None else {"sequence": sequence}
    assert ModelSettings(**kwargs).code_config() == expected


def test_code_config_without_a_hook_equals_a_model_without_sequences():
    with_backend = {"backend": "onnx"}
    plain = ModelSettings(**with_backend).code_config()
    stateful = ModelSettings(**with_backend, sequence={"state": [H]}).code_config()
    assert stateful == plain and "sequence_migrate_hook" not in stateful
    hooked = ModelSettings(**with_backend, sequence={"migrate_hook": "a.py"}).code_config()
    assert hooked == {**plain, "sequence_migrate_hook": "a.py"}
    assert hooked != ModelSettings(**with_backend, sequence={"migrate_hook": "b.py"}).code_config()
