import os
import time

import pytest

from baton.settings import VersionPolicy
from baton.sources.filesystem import FilesystemSource, RepositoryUnavailable


def write(path, text="x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_version_is_offered_only_after_two_identical_polls(tmp_path):
    source = FilesystemSource(tmp_path)
    write(tmp_path / "m" / "1" / "model.onnx")
    assert source.scan()["m"].versions == {}
    first = source.scan()["m"].versions
    assert list(first) == [1]


def test_changing_files_are_not_offered_until_stable(tmp_path):
    source = FilesystemSource(tmp_path)
    f = tmp_path / "m" / "1" / "model.onnx"
    write(f, "a")
    source.scan()
    with f.open("a") as fh:  # still being copied in
        fh.write("more")
    assert source.scan()["m"].versions == {}
    offered = source.scan()["m"].versions
    assert list(offered) == [1]
    # a later change keeps the last stable fingerprint until the new files settle
    stable = offered[1].fingerprint
    with f.open("a") as fh:
        fh.write("again")
    assert source.scan()["m"].versions[1].fingerprint == stable
    assert source.scan()["m"].versions[1].fingerprint != stable


def test_hidden_non_numeric_and_empty_entries_are_ignored(tmp_path):
    source = FilesystemSource(tmp_path)
    write(tmp_path / "m" / ".2.tmp" / "model.onnx")
    write(tmp_path / "m" / "latest" / "model.onnx")
    write(tmp_path / "m" / "0" / "model.onnx")
    (tmp_path / "m" / "3").mkdir()
    write(tmp_path / ".hidden" / "1" / "model.onnx")
    write(tmp_path / "m" / "4" / ".partial")
    source.scan()
    specs = source.scan()
    assert list(specs) == ["m"] and specs["m"].versions == {}


def test_atomic_rename_publish(tmp_path):
    source = FilesystemSource(tmp_path)
    write(tmp_path / "m" / ".5.tmp" / "model.onnx")
    source.scan()
    os.replace(tmp_path / "m" / ".5.tmp", tmp_path / "m" / "5")
    source.scan()
    assert list(source.scan()["m"].versions) == [5]


def test_model_yaml_and_bad_model_yaml_keep_last_good_settings(tmp_path):
    source = FilesystemSource(tmp_path)
    write(tmp_path / "m" / "model.yaml", "version_policy: {latest: 2}\nlabels: {stable: 1}\n")
    spec = source.scan()["m"]
    assert spec.settings.version_policy == VersionPolicy(latest=2)
    assert spec.settings.labels == {"stable": 1} and spec.config_error is None
    time.sleep(0.01)
    write(tmp_path / "m" / "model.yaml", "version_policy: {latest: 0}\n")
    spec = source.scan()["m"]
    assert spec.settings.version_policy == VersionPolicy(latest=2)
    assert "model.yaml" in spec.config_error
    write(tmp_path / "m" / "model.yaml", "unknown_key: 1\n")
    assert "unknown_key" in source.scan()["m"].config_error
    write(tmp_path / "m" / "model.yaml", "[not, a, mapping]\n")
    assert "mapping" in source.scan()["m"].config_error


def test_removed_version_disappears(tmp_path):
    source = FilesystemSource(tmp_path)
    write(tmp_path / "m" / "1" / "model.onnx")
    source.scan()
    assert list(source.scan()["m"].versions) == [1]
    (tmp_path / "m" / "1" / "model.onnx").unlink()
    (tmp_path / "m" / "1").rmdir()
    assert source.scan()["m"].versions == {}


def test_a_missing_or_unreadable_repository_is_unknown_not_empty(tmp_path):
    with pytest.raises(RepositoryUnavailable, match="cannot list the model repository"):
        FilesystemSource(tmp_path / "nope").scan()
    source = FilesystemSource(tmp_path)
    write(tmp_path / "m" / "1" / "model.onnx")
    source.scan()
    assert list(source.scan()["m"].versions) == [1]
    hidden = tmp_path.parent / f"{tmp_path.name}-away"
    tmp_path.rename(hidden)  # an unmounted volume
    try:
        with pytest.raises(RepositoryUnavailable):
            source.scan()
    finally:
        hidden.rename(tmp_path)
    assert list(source.scan()["m"].versions) == [1]  # back: nothing was forgotten


def test_an_unreadable_version_keeps_its_last_offer(tmp_path, monkeypatch):
    from baton.sources import filesystem

    source = FilesystemSource(tmp_path)
    write(tmp_path / "m" / "1" / "model.onnx")
    source.scan()
    offered = source.scan()["m"].versions[1]

    def unreadable(directory, strict=False):
        raise PermissionError(13, "Permission denied", str(directory))

    monkeypatch.setattr(filesystem, "fingerprint", unreadable)
    assert source.scan()["m"].versions[1] == offered


def test_invalid_model_yaml_keeps_the_last_valid_settings_across_restarts(tmp_path):
    write(tmp_path / "m" / "1" / "model.onnx")
    write(tmp_path / "m" / "model.yaml", "version_policy: {latest: 2}\n")
    assert FilesystemSource(tmp_path).scan()["m"].settings.version_policy.latest == 2
    write(tmp_path / "m" / "model.yaml", "rollout: {mode: canary, stepz: [1, 100]}\n")
    restarted = FilesystemSource(tmp_path)  # a new process: only the saved copy remains
    spec = restarted.scan()["m"]
    assert spec.settings.version_policy.latest == 2 and "stepz" in spec.config_error


def test_a_model_never_seen_valid_is_offered_without_settings(tmp_path):
    write(tmp_path / "m" / "1" / "model.onnx")
    write(tmp_path / "m" / "model.yaml", "version_policy: {latest: two}\n")
    spec = FilesystemSource(tmp_path).scan()["m"]
    assert spec.settings is None and "latest" in spec.config_error
