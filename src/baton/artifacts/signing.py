"""Ed25519 signatures over manifests (the ``cryptography`` package).

``baton keygen NAME`` writes ``NAME.key`` (private, PEM PKCS#8, mode 0600) and ``NAME.pub``
(public, PEM). A key's id is the first 16 hex digits of the SHA-256 of its raw public bytes; a
manifest's signature records it, so a server that trusts several keys at once (key rotation)
knows which one to check against.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from baton.artifacts.manifest import Manifest, canonical_body
from baton.errors import VersionFailed

__all__ = ["TrustStore", "generate_key_pair", "key_id", "load_private_key", "sign_manifest"]

ALGORITHM = "ed25519"


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_key_pair(stem: Path) -> tuple[Path, Path]:
    """Write ``<stem>.key`` (owner-only) and ``<stem>.pub``; returns both paths."""
    private = Ed25519PrivateKey.generate()
    key_path, pub_path = stem.with_suffix(".key"), stem.with_suffix(".pub")
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub_path.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key_path, pub_path


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def _load_public_key(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(Path(path).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 public key")
    return key


def sign_manifest(manifest: Manifest, private: Ed25519PrivateKey) -> None:
    """Add a signature over the manifest's canonical body."""
    value = private.sign(canonical_body(manifest.body))
    manifest.signatures.append(
        {
            "algorithm": ALGORITHM,
            "key_id": key_id(private.public_key()),
            "value": base64.b64encode(value).decode("ascii"),
        }
    )


class TrustStore:
    """The public keys a server accepts signatures from."""

    def __init__(self, public_key_files: Iterable[Path] = ()) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {}
        for path in public_key_files:
            key = _load_public_key(path)
            self._keys[key_id(key)] = key

    def __len__(self) -> int:
        return len(self._keys)

    def check(self, manifest: Manifest, required: bool) -> str | None:
        """The id of the trusted key whose signature is valid, or ``None`` when no trusted key
        signed it and no signature is ``required``. A signature by a trusted key that does not
        match always fails. Raises ``VersionFailed`` with reason ``unsigned``,
        ``untrusted_key`` or ``bad_signature``."""
        if not manifest.signatures:
            if required:
                raise VersionFailed("unsigned", "the manifest is unsigned; a signature is required")
            return None
        body = canonical_body(manifest.body)
        untrusted = []
        for sig in manifest.signatures:
            key = self._keys.get(str(sig.get("key_id")))
            if sig.get("algorithm") != ALGORITHM or key is None:
                untrusted.append(str(sig.get("key_id")))
                continue
            try:
                key.verify(base64.b64decode(str(sig.get("value")), validate=True), body)
            except (InvalidSignature, ValueError):
                raise VersionFailed(
                    "bad_signature",
                    f"the signature by key {sig['key_id']} does not match this manifest "
                    "(altered after signing, or signed over a different manifest)",
                ) from None
            return str(sig["key_id"])
        if not required:
            return None  # no trusted signer, and nobody asked for one: as good as unsigned
        raise VersionFailed(
            "untrusted_key", f"signed only by keys this server does not trust: {untrusted}"
        )
