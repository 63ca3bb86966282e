"""The fleet store: etcd, through its JSON gateway (``etcd3gw``), with JSON values.

Blocking calls (run them in a thread from async code). Every failure to reach etcd raises
:class:`StoreUnavailable` — callers treat it as *unknown*, never as "empty": a node keeps
serving, a coordinator pauses. Several endpoints are tried in turn.

    store = FleetStore.connect("etcd://127.0.0.1:2379,127.0.0.1:22379", "prod")
    doc, revision = store.get(store.keys.target("fraud"))
    store.cas(store.keys.target("fraud"), {"version": 7, ...}, revision)   # compare-and-set
    lease = store.lease(10); store.put(store.keys.node("n1"), report, lease)
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterator
from urllib.parse import urlparse

import etcd3gw
import orjson
import requests

from baton.fleet.keys import FleetKeys
from baton.types import is_digits

__all__ = ["FleetStore", "StoreUnavailable", "parse_endpoints"]

log = logging.getLogger("baton.fleet")


class StoreUnavailable(ConnectionError):
    """etcd could not be reached (or answered with an error)."""


def parse_endpoints(url: str) -> list[tuple[str, int]]:
    """``etcd://host:port[,host:port]`` → [(host, port), ...]; ``ValueError`` if malformed."""
    parsed = urlparse(url)
    if parsed.scheme != "etcd" or not parsed.netloc:
        raise ValueError(f"{url!r} is not an etcd URL: use etcd://HOST:PORT[,HOST:PORT]")
    endpoints = []
    for part in parsed.netloc.split(","):
        host, _, port = part.rpartition(":")
        if not host or not is_digits(port):
            raise ValueError(f"{part!r} in {url!r} is not HOST:PORT")
        endpoints.append((host, int(port)))
    return endpoints


def _why(exc: Exception) -> str:
    """A short reason for a failed call (etcd3gw's connection errors have empty messages)."""
    if isinstance(exc, requests.ConnectionError | etcd3gw.exceptions.ConnectionFailedError):
        return "connection refused or unreachable"
    if isinstance(exc, requests.Timeout | etcd3gw.exceptions.ConnectionTimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


def _json(doc: dict) -> str:
    """``doc`` as ASCII JSON (etcd3gw sends values as latin-1; non-ASCII text is escaped)."""
    return json.dumps(doc, separators=(",", ":"))


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class FleetStore:
    def __init__(self, endpoints: list[tuple[str, int]], fleet: str, timeout: float = 2.0):
        self.keys = FleetKeys(fleet)
        self.endpoints = endpoints
        self.timeout = timeout
        self._clients = [etcd3gw.client(host=h, port=p, timeout=timeout) for h, p in endpoints]
        self._current = 0

    @staticmethod
    def connect(url: str, fleet: str, timeout: float = 2.0) -> FleetStore:
        return FleetStore(parse_endpoints(url), fleet, timeout)

    def _call(self, fn: Callable[[etcd3gw.client], object]) -> object:
        """``fn(client)`` on the first endpoint that answers."""
        errors = []
        for i in range(len(self._clients)):
            index = (self._current + i) % len(self._clients)
            try:
                result = fn(self._clients[index])
                self._current = index
                return result
            except (requests.RequestException, etcd3gw.exceptions.Etcd3Exception, OSError,
                    ValueError) as exc:  # fmt: skip
                host, port = self.endpoints[index]
                errors.append(f"{host}:{port}: {_why(exc)}")
        raise StoreUnavailable("; ".join(errors)[:300])

    # ---- keys ------------------------------------------------------------------------------
    def get(self, key: str) -> tuple[dict | None, int]:
        """(the JSON value, its mod revision), or (None, 0) when the key does not exist."""
        found = self._call(lambda c: c.get(key, metadata=True))
        if not found:
            return None, 0
        value, meta = found[0]
        return orjson.loads(value), int(meta["mod_revision"])

    def get_prefix(self, prefix: str) -> dict[str, dict]:
        found = self._call(lambda c: c.get_prefix(prefix))
        out = {}
        for value, meta in found:
            key = meta["key"].decode() if isinstance(meta["key"], bytes) else meta["key"]
            try:
                out[key] = orjson.loads(value)
            except orjson.JSONDecodeError:
                log.warning("ignoring %s: not JSON", key)
        return out

    def get_prefix_revisions(self, prefix: str) -> dict[str, tuple[dict, int]]:
        """Every key under ``prefix`` → (its JSON value, its mod revision)."""
        found = self._call(lambda c: c.get_prefix(prefix))
        out = {}
        for value, meta in found:
            key = meta["key"].decode() if isinstance(meta["key"], bytes) else meta["key"]
            try:
                out[key] = (orjson.loads(value), int(meta["mod_revision"]))
            except orjson.JSONDecodeError:
                log.warning("ignoring %s: not JSON", key)
        return out

    def put(self, key: str, doc: dict, lease: etcd3gw.Lease | None = None) -> None:
        self._call(lambda c: c.put(key, _json(doc), lease=lease))

    def delete(self, key: str) -> None:
        self._call(lambda c: c.delete(key))

    def create(self, key: str, doc: dict, lease: etcd3gw.Lease | None = None) -> bool:
        """Write ``doc`` only if ``key`` does not exist (bound to ``lease``, if given); ``False``
        when it does. With a lease, this is etcd's election: one holder until its lease ends."""
        put: dict = {"key": _b64(key), "value": _b64(_json(doc))}
        if lease is not None:
            put["lease"] = lease.id
        txn = {
            "compare": [{"key": _b64(key), "result": "EQUAL", "target": "CREATE",
                         "create_revision": 0}],
            "success": [{"request_put": put}],
            "failure": [],
        }  # fmt: skip
        response = self._call(lambda c: c.transaction(txn))
        return bool(response.get("succeeded"))

    def cas(self, key: str, doc: dict, revision: int, also: dict[str, dict] | None = None,
            unchanged: dict[str, int] | None = None) -> bool:  # fmt: skip
        """Write ``doc`` only if ``key`` is still at mod ``revision`` (0: does not exist yet) and
        every ``unchanged`` key still at its revision, together with the ``also`` keys (one
        transaction: all or none); ``False`` when someone wrote one of them first."""
        puts = [{"request_put": {"key": _b64(k), "value": _b64(_json(d))}}
                for k, d in {key: doc, **(also or {})}.items()]  # fmt: skip
        compare = [{"key": _b64(k), "result": "EQUAL", "target": "MOD", "mod_revision": rev}
                   for k, rev in {key: revision, **(unchanged or {})}.items()]  # fmt: skip
        txn = {"compare": compare, "success": puts, "failure": []}
        response = self._call(lambda c: c.transaction(txn))
        return bool(response.get("succeeded"))

    # ---- leases, locks, watches --------------------------------------------------------------
    def lease(self, ttl: int) -> etcd3gw.Lease:
        return self._call(lambda c: c.lease(ttl))

    def refresh(self, lease: etcd3gw.Lease) -> bool:
        """Keep ``lease`` alive; ``False`` when it has expired (a new one is needed)."""
        ttl = self._call(lambda c: lease.refresh())
        return bool(ttl) and int(ttl) > 0

    def revoke(self, lease: etcd3gw.Lease) -> None:
        """End ``lease`` now: the keys bound to it go at once (a node leaving, a coordinator
        stepping down)."""
        self._call(lambda c: lease.revoke())

    def lock(self, name: str, ttl: int) -> etcd3gw.Lock:
        return self._call(lambda c: c.lock(id=name, ttl=ttl))

    def watch_prefix(self, prefix: str) -> tuple[Iterator[dict], Callable[[], None]]:
        """A blocking iterator of changes under ``prefix`` and a function that cancels it."""
        return self._call(lambda c: c.watch_prefix(prefix))

    def status(self) -> dict:
        return self._call(lambda c: c.status())
