import numpy as np
import orjson
import pytest

from baton.errors import VersionFailed
from baton.loading.warmup import load_warmup_requests, run_warmup, synthesize_inputs
from baton.runtimes.fake import FakeRuntime
from baton.settings import WarmupSettings
from baton.types import Signature, TensorSpec


def test_synthesized_inputs_fit_the_signature():
    sig = Signature(
        (
            TensorSpec("a", "FP32", (-1, 3)),
            TensorSpec("b", "INT64", (2,)),
            TensorSpec("c", "BYTES", (-1,)),
        ),
        (),
    )
    inputs = synthesize_inputs(sig)
    assert inputs["a"].shape == (1, 3) and inputs["a"].dtype == np.float32
    assert inputs["b"].shape == (2,) and inputs["b"].dtype == np.int64
    assert inputs["c"].tolist() == [b"warmup"]


def test_warmup_files_are_used(tmp_path):
    (tmp_path / "warmup").mkdir()
    for i in range(2):
        (tmp_path / "warmup" / f"{i}.json").write_bytes(
            orjson.dumps(
                {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4], "data": [i] * 8}]}
            )
        )
    requests = load_warmup_requests(tmp_path)
    assert [r["x"].shape for r in requests] == [(2, 4), (2, 4)]
    rt = FakeRuntime(1.0)
    rt.load()
    warmup = run_warmup(rt, rt.signature(), tmp_path, WarmupSettings(iterations=3))
    assert warmup.runs == rt.calls == 6 + 3  # three extra runs: this model is quick
    assert 0 < warmup.predict_seconds < 1e-3


def test_bad_warmup_file_fails_the_version(tmp_path):
    (tmp_path / "warmup").mkdir()
    (tmp_path / "warmup" / "0.json").write_text("{")
    with pytest.raises(VersionFailed) as err:
        load_warmup_requests(tmp_path)
    assert err.value.reason == "bad_warmup_file"


def test_non_finite_output_fails(tmp_path):
    rt = FakeRuntime(1.0, nan_output=True)
    rt.load()
    with pytest.raises(VersionFailed) as err:
        run_warmup(rt, rt.signature(), tmp_path, WarmupSettings())
    assert err.value.reason == "non_finite_output"


def test_disabled_warmup_runs_nothing(tmp_path):
    rt = FakeRuntime(1.0)
    rt.load()
    assert run_warmup(rt, rt.signature(), tmp_path, WarmupSettings(enabled=False)).runs == 0
    assert rt.calls == 0


def test_a_slow_model_gets_no_extra_runs(tmp_path):
    rt = FakeRuntime(1.0, predict_seconds=0.002)
    rt.load()
    warmup = run_warmup(rt, rt.signature(), tmp_path, WarmupSettings(iterations=2))
    assert warmup.runs == rt.calls == 2 and warmup.predict_seconds >= 0.002
