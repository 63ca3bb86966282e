"""Model repositories in S3 (or anything that speaks its API), through boto3.

Layout: ``s3://BUCKET/PREFIX/<model>/model.yaml`` and ``.../<model>/<version>/<files>``, with
``baton-manifest.json`` uploaded *last*: a version without its manifest is not complete and
is never offered. Credentials and region come the usual AWS way (environment, config files,
instance roles); the endpoint from ``--s3-endpoint`` or ``AWS_ENDPOINT_URL``.

    location = S3Location.parse("s3://models/prod")
    client = s3_client(endpoint="http://127.0.0.1:9000")
    upload_version(client, location, "fraud", 7, Path("staging/fraud/7"))
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from baton.artifacts.manifest import MANIFEST

__all__ = ["S3Location", "is_s3", "list_keys", "s3_client", "upload_version"]


def is_s3(location: object) -> bool:
    return str(location).startswith("s3://")


@dataclass(frozen=True, slots=True)
class S3Location:
    bucket: str
    prefix: str  # "" or "a/b/" (always ending in "/")

    @staticmethod
    def parse(url: str) -> S3Location:
        if not is_s3(url):
            raise ValueError(f"{url!r} is not an S3 URL: use s3://BUCKET[/PREFIX]")
        bucket, _, prefix = url[len("s3://") :].partition("/")
        if not bucket:
            raise ValueError(f"{url!r} names no bucket")
        prefix = prefix.strip("/")
        return S3Location(bucket, f"{prefix}/" if prefix else "")

    def key(self, *parts: str | int) -> str:
        return self.prefix + "/".join(str(p) for p in parts)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def s3_client(endpoint: str | None = None, timeout: float = 10.0):
    """A boto3 S3 client (imported here: the S3 extra is only needed by who uses S3)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:
        raise RuntimeError(
            f"S3 repositories need boto3: pip install 'baton[fleet]' ({exc})"
        ) from None
    config = Config(connect_timeout=timeout, read_timeout=timeout,
                    retries={"max_attempts": 2, "mode": "standard"})  # fmt: skip
    return boto3.client(
        "s3", endpoint_url=endpoint or os.environ.get("AWS_ENDPOINT_URL") or None, config=config
    )


def list_keys(client, location: S3Location) -> dict[str, tuple[int, str]]:
    """Every key under the location → (size, ETag), following pages. One LIST request per
    1,000 keys."""
    keys: dict[str, tuple[int, str]] = {}
    token = None
    while True:
        kwargs = {"Bucket": location.bucket, "Prefix": location.prefix}
        if token:
            kwargs["ContinuationToken"] = token
        page = client.list_objects_v2(**kwargs)
        for item in page.get("Contents", ()):
            keys[item["Key"]] = (int(item["Size"]), item["ETag"])
        if not page.get("IsTruncated"):
            return keys
        token = page["NextContinuationToken"]


def upload_version(client, location: S3Location, model: str, version: int, directory: Path) -> int:
    """Upload a published version directory, its manifest last; returns the bytes uploaded.
    Refuses a version that already exists (its manifest is there)."""
    manifest_key = location.key(model, version, MANIFEST)
    listing = client.list_objects_v2(Bucket=location.bucket, Prefix=manifest_key)
    if listing.get("KeyCount"):
        raise FileExistsError(f"{model} version {version} already exists in {location}")
    total = 0
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST)
    for path in [*files, directory / MANIFEST]:
        relative = path.relative_to(directory).as_posix()
        client.upload_file(str(path), location.bucket, location.key(model, version, relative))
        total += path.stat().st_size
    return total
