"""Publish a model as a new version of a repository, atomically and with a manifest.

    path = publish(Path("model.onnx"), Path("repo"), "fraud", sign_key=Path("ci.key"))

The files are copied (and hashed in the same pass) into a hidden staging directory beside the
versions, the model is loaded once to record its signature, the manifest is written last (with
the model.yaml settings that name code — backend, handler, module and their arguments — so a
signature covers them too), and the staging directory is renamed to the version number. A
reader therefore sees either no version or a complete one, and never a manifest without all its
files.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from baton.artifacts.delta import DELTA, MODEL, make_delta
from baton.artifacts.manifest import (
    MANIFEST,
    FileEntry,
    Manifest,
    copy_hashed,
    hash_file,
    write_manifest,
)
from baton.artifacts.signing import load_private_key, sign_manifest
from baton.errors import VersionFailed
from baton.runtimes.registry import runtime_for
from baton.settings import ModelSettings, read_settings
from baton.types import is_digits

__all__ = ["PublishError", "next_version", "publish", "publish_to_s3"]

#: A single model file is stored under the name its backend loads.
FILE_NAMES = {".onnx": "model.onnx"}

Progress = Callable[[int, int], None]  # (bytes done, bytes in all)


class PublishError(Exception):
    """The version could not be published; nothing was added to the repository."""


def next_version(model_dir: Path) -> int:
    """One more than the highest numbered version directory (1 for a new model)."""
    numbers = (
        [int(p.name) for p in model_dir.iterdir() if is_digits(p.name)]
        if model_dir.is_dir()
        else []
    )
    return max(numbers, default=0) + 1


def _sources(source: Path) -> list[tuple[Path, str]]:
    """(file, name in the version) for a model file or every non-hidden file of a directory."""
    if source.is_file():
        name = FILE_NAMES.get(source.suffix)
        if name is None:
            raise PublishError(f"{source}: unknown model file type; publish its directory")
        return [(source, name)]
    if not source.is_dir():
        raise PublishError(f"{source} does not exist")
    files = []
    for root, dirs, names in os.walk(source):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            path = Path(root, name)
            rel = path.relative_to(source).as_posix()
            if not name.startswith(".") and rel != MANIFEST:
                files.append((path, rel))
    if not files:
        raise PublishError(f"{source} holds no files")
    return files


def _model_facts(directory: Path, settings: ModelSettings) -> tuple[str, dict]:
    """(framework, signature as JSON) of the model in ``directory``, by loading it once with
    the model's settings (some backends take their signature from model.yaml)."""
    runtime = runtime_for(directory, settings)
    try:
        runtime.load()
        return runtime.platform, runtime.signature().to_json()
    finally:
        runtime.unload()


def publish(
    source: Path,
    repository: Path,
    model: str,
    *,
    version: int | None = None,
    sign_key: Path | None = None,
    description: str = "",
    labels: tuple[str, ...] = (),
    parent: int | None = None,
    delta_from: int | None = None,
    progress: Progress | None = None,
) -> Path:
    """Publish ``source`` (a model file or directory) as ``model`` version ``version`` (default:
    the next number) and return the version directory; with ``delta_from``, store only the
    ONNX initializers that differ from that version's. Raises :class:`PublishError`."""
    private = load_private_key(sign_key) if sign_key is not None else None
    files = _sources(Path(source))
    model_dir = Path(repository) / model
    model_dir.mkdir(parents=True, exist_ok=True)
    version = version if version is not None else next_version(model_dir)
    final = model_dir / str(version)
    if final.exists():
        raise PublishError(f"{model} version {version} already exists in {repository}")
    staging = model_dir / f".publish-{version}-{uuid.uuid4().hex[:8]}"
    total = sum(path.stat().st_size for path, _ in files)
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    try:
        entries = {name: copy_hashed(path, staging / name, advance) for path, name in files}
        settings = _settings_of(model_dir)
        try:
            framework, signature = _model_facts(staging, settings)
        except VersionFailed as exc:
            raise PublishError(f"{source} is not a model Baton can load: {exc}") from None
        delta = None
        if delta_from is not None:
            delta = _to_delta(staging, model_dir / str(delta_from), delta_from, entries)
            parent = delta_from if parent is None else parent
        body = {
            "model": model,
            "version": version,
            "framework": framework,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "description": description,
            "parent": parent,
            "labels": list(labels),
            "files": {n: {"size": e.size, "sha256": e.sha256} for n, e in sorted(entries.items())},
            "signature": signature,
            "code": settings.code_config(),  # what decides which code runs, signed with the rest
            "delta": delta,
        }
        manifest = Manifest(body)
        if private is not None:
            sign_manifest(manifest, private)
        write_manifest(staging, manifest)  # last: the version's files are all in place
        try:
            os.rename(staging, final)  # fails if a concurrent publisher took the number
        except OSError as exc:
            raise PublishError(f"{model} version {version} could not be created: {exc}") from None
        _fsync_dir(model_dir)
        return final
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _settings_of(model_dir: Path) -> ModelSettings:
    config = model_dir / "model.yaml"
    if not config.is_file():
        return ModelSettings()
    try:
        return read_settings(config)
    except Exception as exc:
        raise PublishError(f"{config} is not valid: {exc}") from None


def _to_delta(staging: Path, base_dir: Path, base: int, entries: dict[str, FileEntry]) -> dict:
    """Replace ``staging``'s model.onnx by its delta against ``base_dir`` (updating
    ``entries``); returns the manifest's delta entry."""
    if MODEL not in entries:
        raise PublishError("a delta needs an ONNX model (model.onnx)")
    try:
        delta = make_delta(staging / MODEL, base_dir, base, staging / DELTA)
    except (ValueError, OSError) as exc:
        raise PublishError(f"cannot publish a delta from version {base}: {exc}") from None
    (staging / MODEL).unlink()
    del entries[MODEL]
    entries[DELTA] = hash_file(staging / DELTA)
    return delta


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish_to_s3(
    source: Path,
    url: str,
    model: str,
    *,
    endpoint: str | None = None,
    version: int | None = None,
    client=None,
    **options,
) -> str:
    """Publish ``source`` to an S3 repository: built and signed locally as :func:`publish`
    does (with the model's model.yaml from S3), then uploaded file by file, the manifest last,
    so a reader never sees a manifest without its files. Returns the version's URL."""
    from baton.artifacts.s3 import S3Location, list_keys, s3_client, upload_version

    if options.get("delta_from") is not None:
        raise PublishError("delta versions need a local repository (their base is read there)")
    location = S3Location.parse(url)
    try:
        client = client if client is not None else s3_client(endpoint)
        listing = list_keys(client, S3Location(location.bucket, location.key(model) + "/"))
    except Exception as exc:
        raise PublishError(f"cannot list {location}{model}/: {exc}") from None
    versions = [
        int(part) for key in listing
        if is_digits(part := key[len(location.key(model)) + 1 :].split("/", 1)[0])
    ]  # fmt: skip
    version = version if version is not None else max(versions, default=0) + 1
    if version in versions:
        raise PublishError(f"{model} version {version} already exists in {location}")
    with tempfile.TemporaryDirectory(prefix="baton-publish-") as staging:
        repository = Path(staging)
        (repository / model).mkdir()
        config_key = location.key(model, "model.yaml")
        if config_key in listing:
            client.download_file(
                location.bucket, config_key, str(repository / model / "model.yaml")
            )
        path = publish(source, repository, model, version=version, **options)
        try:
            upload_version(client, location, model, version, path)
        except FileExistsError as exc:
            raise PublishError(str(exc)) from None
        except Exception as exc:
            raise PublishError(f"upload to {location} failed: {exc}") from None
    return f"{location}{model}/{version}"
