"""Polls an S3 model repository and downloads versions into a local cache when they load.

A version is complete once its ``baton-manifest.json`` exists (publishers upload it last); it
is offered with its manifest's SHA-256 as fingerprint and digest, and a ``fetch`` that the
loader calls before verifying: the listed files are downloaded into a hidden directory under
``cache_dir``, checked against the manifest's sizes, and renamed into place — an interrupted
download never loads (and the verifier checks every byte again). The cache keeps the newest few
listed versions of each model; versions no longer listed, or older, are pruned.

Cost-aware: one LIST per 1,000 keys per poll (default every 30 s), a GET of a model.yaml or a
manifest only when its ETag changed. S3 unreachable: :class:`~baton.sources.base.Unknown`, the
last offer stands, and polls back off (doubling, up to ten intervals) until S3 answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import shutil
import threading
import uuid
from functools import partial
from pathlib import Path

import orjson
import yaml
from pydantic import ValidationError

from baton.artifacts.files import VersionFiles
from baton.artifacts.manifest import MANIFEST
from baton.artifacts.s3 import S3Location, list_keys, s3_client
from baton.settings import ModelSettings
from baton.sources.base import ModelSpec, Publish, Unknown
from baton.sources.last_valid import LastValidSettings
from baton.types import is_digits

__all__ = ["S3Source"]

log = logging.getLogger("baton.sources.s3")
CONFIG_FILE = "model.yaml"
KEEP = 3  # versions of a model kept in the cache (the newest listed ones); others re-download


class S3Source:
    def __init__(
        self,
        url: str,
        cache_dir: Path,
        interval: float = 30.0,
        endpoint: str | None = None,
        client=None,
    ) -> None:
        self.location = S3Location.parse(url)
        self.name = f"s3:{self.location}"
        self.cache = Path(cache_dir)
        self.interval = interval
        self._client = client if client is not None else s3_client(endpoint)
        self._settings = LastValidSettings(self.cache / ".settings")
        self._etags: dict[str, str] = {}  # key → ETag of what was read
        self._manifests: dict[str, bytes] = {}  # manifest key → its bytes
        self._configs: dict[str, tuple[ModelSettings | None, str | None]] = {}
        self.requests = 0  # S3 requests made (LIST pages and GETs), for the cost report
        self._downloading: set[Path] = set()  # staging directories being filled now
        self._lock = threading.Lock()
        self._wake = asyncio.Event()
        self._scanned = asyncio.Event()

    async def refresh(self) -> None:
        scanned = self._scanned
        self._wake.set()
        await scanned.wait()

    async def run(self, publish: Publish) -> None:
        last: object = None
        failures = 0
        while True:
            self._wake.clear()
            try:
                offer: object = await asyncio.to_thread(self.scan)
                failures = 0
            except Exception as exc:  # S3 down, credentials, network: unknown, not empty
                failures += 1
                offer = Unknown(f"cannot list {self.location}: {exc}")
            if offer != last:
                publish(self.name, offer)
                last = offer
            self._scanned.set()
            self._scanned = asyncio.Event()
            backoff = min(2 ** max(failures - 1, 0), 10) if failures else 1
            delay = self.interval * backoff * (1 + random.uniform(-0.1, 0.1))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    # ---- one poll -------------------------------------------------------------------------
    def scan(self) -> dict[str, ModelSpec]:
        """The full offer (blocking). Raises whatever the S3 client raises when it cannot list."""
        listing = list_keys(self._client, self.location)
        self.requests += max(1, -(-len(listing) // 1000))
        models: dict[str, dict[int, set[str]]] = {}
        configs: dict[str, str] = {}
        for key in listing:
            parts = key[len(self.location.prefix) :].split("/")
            if len(parts) == 2 and parts[1] == CONFIG_FILE:
                configs[parts[0]] = key
                models.setdefault(parts[0], {})
            elif len(parts) >= 3 and is_digits(parts[1]) and int(parts[1]) > 0:
                models.setdefault(parts[0], {}).setdefault(int(parts[1]), set()).add(
                    "/".join(parts[2:])
                )
        specs = {}
        for model, versions in sorted(models.items()):
            if model.startswith((".", "_")):
                continue
            settings, error = self._model_settings(model, configs.get(model), listing)
            offered = {}
            for version, names in versions.items():
                if MANIFEST not in names:
                    continue  # still uploading (or abandoned): not complete
                manifest_key = self.location.key(model, version, MANIFEST)
                manifest = self._read(manifest_key, listing[manifest_key][1])
                digest = hashlib.sha256(manifest).hexdigest()
                offered[version] = VersionFiles(
                    self.cache / model / str(version), digest, digest=digest,
                    fetch=partial(self._download, model, version, manifest),
                )  # fmt: skip
            specs[model] = ModelSpec(model, settings, offered, error)
        self._prune(specs)
        return specs

    def _read(self, key: str, etag: str) -> bytes:
        if self._etags.get(key) != etag or key not in self._manifests:
            self._manifests[key] = self._get(key)
            self._etags[key] = etag
        return self._manifests[key]

    def _get(self, key: str) -> bytes:
        self.requests += 1
        return self._client.get_object(Bucket=self.location.bucket, Key=key)["Body"].read()

    def _model_settings(self, model: str, key: str | None, listing: dict
                        ) -> tuple[ModelSettings | None, str | None]:  # fmt: skip
        if key is None:
            self._settings.save(model, ModelSettings())
            return ModelSettings(), None
        etag = listing[key][1]
        if self._etags.get(key) == etag and model in self._configs:
            return self._configs[model]
        try:
            raw = yaml.safe_load(self._get(key)) or {}
            if not isinstance(raw, dict):
                raise ValueError("model.yaml must be a mapping")
            settings = ModelSettings.model_validate(raw)
            self._settings.save(model, settings)
            result: tuple[ModelSettings | None, str | None] = (settings, None)
        except (yaml.YAMLError, ValueError, ValidationError) as exc:
            message = f"{self.location.key(model, CONFIG_FILE)}: {exc}".replace("\n", " ")
            result = (self._settings.load(model), message)
        self._etags[key] = etag
        self._configs[model] = result
        return result

    # ---- the cache ------------------------------------------------------------------------
    def _download(self, model: str, version: int, manifest: bytes) -> None:
        """Bring the version into the cache (once): every listed file, then the manifest, into a
        hidden directory renamed into place when complete. Blocking; raises on failure."""
        final = self.cache / model / str(version)
        if (final / MANIFEST).is_file() and (final / MANIFEST).read_bytes() == manifest:
            return
        files = orjson.loads(manifest)["body"]["files"]
        staging = self.cache / model / f".{version}.{uuid.uuid4().hex[:8]}"
        with self._lock:
            self._downloading.add(staging)
        try:
            for name, entry in files.items():
                target = staging / name
                if not target.resolve().is_relative_to(staging.resolve()):
                    raise ValueError(f"{name!r} in the manifest leads out of the version")
                target.parent.mkdir(parents=True, exist_ok=True)
                self.requests += 1
                key = self.location.key(model, version, name)
                self._client.download_file(self.location.bucket, key, str(target))
                if target.stat().st_size != int(entry["size"]):
                    raise ValueError(f"{name} downloaded as {target.stat().st_size} bytes, the "
                                     f"manifest says {entry['size']}")  # fmt: skip
            (staging / MANIFEST).write_bytes(manifest)
            shutil.rmtree(final, ignore_errors=True)
            staging.rename(final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            with self._lock:
                self._downloading.discard(staging)

    def _prune(self, specs: dict[str, ModelSpec]) -> None:
        """Keep the newest ``KEEP`` listed versions of each model in the cache; remove the rest
        and leftovers of interrupted downloads (a version that loads is loaded from a verified
        copy, so the cache only saves downloads)."""
        if not self.cache.is_dir():
            return
        with self._lock:
            busy = set(self._downloading)
        for model_dir in self.cache.iterdir():
            if not model_dir.is_dir() or model_dir.name.startswith("."):
                continue
            offered = specs.get(model_dir.name)
            keep = set(sorted(offered.versions)[-KEEP:]) if offered is not None else set()
            for entry in model_dir.iterdir():
                stale = entry.name.startswith(".") or not (
                    is_digits(entry.name) and int(entry.name) in keep
                )
                if stale and entry.is_dir() and entry not in busy:
                    shutil.rmtree(entry, ignore_errors=True)
