import orjson
import pytest

from baton.errors import VersionFailed
from baton.loading.golden import run_golden
from baton.runtimes.fake import FakeRuntime
from baton.settings import GoldenSettings


def case(tmp_path, name, x, y, **extra):
    folder = tmp_path / "golden"
    folder.mkdir(exist_ok=True)
    doc = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": x}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [1, 4], "data": y}],
        **extra,
    }
    (folder / name).write_bytes(orjson.dumps(doc))


@pytest.fixture
def runtime():
    rt = FakeRuntime(1.0)  # y = x + 1
    rt.load()
    return rt


def test_no_golden_folder_checks_nothing(tmp_path, runtime):
    assert run_golden(runtime, tmp_path, GoldenSettings()) == 0


def test_matching_cases_pass(tmp_path, runtime):
    case(tmp_path, "a.json", [0, 1, 2, 3], [1, 2, 3, 4])
    case(tmp_path, "b.json", [0, 0, 0, 0], [1, 1, 1, 1.000001])  # within tolerance
    assert run_golden(runtime, tmp_path, GoldenSettings()) == 2


@pytest.mark.parametrize(
    ("y", "extra", "message"),
    [
        ([1, 2, 3, 5], {}, "output 'y' differs by up to 1"),
        ([1, 2, 3, 4.01], {}, "differs by up to 0.01"),
        ([1, 2, 3, 4.01], {"tolerance": {"atol": 0.05}}, None),  # the case's own tolerance
    ],
)
def test_mismatch_fails_with_reason(tmp_path, runtime, y, extra, message):
    case(tmp_path, "a.json", [0, 1, 2, 3], y, **extra)
    if message is None:
        assert run_golden(runtime, tmp_path, GoldenSettings()) == 1
        return
    with pytest.raises(VersionFailed) as err:
        run_golden(runtime, tmp_path, GoldenSettings())
    assert err.value.reason == "golden_mismatch" and message in str(err.value)
    assert "a.json" in str(err.value)


def test_shape_mismatch_and_bad_files(tmp_path, runtime):
    folder = tmp_path / "golden"
    folder.mkdir()
    (folder / "bad.json").write_text("{nope")
    with pytest.raises(VersionFailed) as err:
        run_golden(runtime, tmp_path, GoldenSettings())
    assert err.value.reason == "bad_golden_file"
    (folder / "bad.json").unlink()
    doc = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [0] * 4}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [2, 2], "data": [1] * 4}],
    }
    (folder / "shape.json").write_bytes(orjson.dumps(doc))
    with pytest.raises(VersionFailed, match=r"has shape \[1, 4\], expected \[2, 2\]"):
        run_golden(runtime, tmp_path, GoldenSettings())
