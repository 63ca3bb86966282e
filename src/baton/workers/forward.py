"""A worker passes on what it does not answer itself: to the supervisor, over a Unix socket.

Inference, metadata and liveness are a worker's own; node readiness, the repository API, the
admin API and ``/metrics`` belong to the supervisor, which sees the whole node.
:class:`SupervisorProxy` forwards such an HTTP request as it came (headers included, so the
supervisor checks the same token) and streams the answer back; :class:`RemoteRepository` is
the repository the worker's gRPC service talks to (over the worker's channel).
"""

from __future__ import annotations

import asyncio

import httpx
import orjson

from baton.api.repository import IndexEntry
from baton.errors import Unavailable
from baton.workers.channel import Channel, WorkerGone
from baton.workers.replica import Replica

__all__ = ["RemoteRepository", "SupervisorProxy", "supervisor_client"]

_HOP_BY_HOP = {b"host", b"connection", b"keep-alive", b"transfer-encoding", b"content-length"}


def supervisor_client(socket_path: str) -> httpx.AsyncClient:
    """An HTTP client for the supervisor's private socket (no read timeout: a repository load
    waits for the load)."""
    return httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(uds=socket_path),
        base_url="http://supervisor",
        timeout=httpx.Timeout(None, connect=5.0, write=30.0),
    )


class SupervisorProxy:
    """ASGI app forwarding every HTTP request to the supervisor (bodies up to ``limit``)."""

    def __init__(self, client: httpx.AsyncClient, limit: int) -> None:
        self.client = client
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        try:
            body = await self._body(receive)
        except _TooLarge:
            return await _answer(send, 413, f"request body exceeds the {self.limit}-byte limit")
        if body is None:
            return  # the client went away before it had sent its request
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP_BY_HOP]
        query = scope.get("query_string", b"")
        url = scope["path"] + ("?" + query.decode("latin-1") if query else "")
        request = self.client.build_request(scope["method"], url, headers=headers, content=body)
        try:
            response = await self.client.send(request, stream=True)
        except httpx.HTTPError as exc:
            return await _answer(send, 503, f"the node's supervisor is not answering ({exc})")
        gone = asyncio.ensure_future(_disconnected(receive))  # an endless stream's client left
        try:
            out = [(k, v) for k, v in response.headers.raw if k.lower() not in _HOP_BY_HOP]
            await send({"type": "http.response.start", "status": response.status_code,
                        "headers": out})  # fmt: skip
            async for chunk in response.aiter_raw():
                if gone.done():
                    return  # stop reading from the supervisor: nobody listens any more
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        except httpx.HTTPError:
            pass  # the supervisor went away mid-answer; the client sees a cut response
        finally:
            gone.cancel()
            await response.aclose()

    async def _body(self, receive) -> bytes | None:
        """The whole request body; ``None`` if the client disconnected first."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


class _TooLarge(Exception):
    pass


async def _disconnected(receive) -> None:
    """Return once the client has disconnected (after its whole request was received)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _answer(send, status: int, message: str) -> None:
    body = orjson.dumps({"error": message})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RemoteRepository:
    """The node's model repository as a worker sees it: the index from the latest generation;
    load and unload asked of the supervisor over the worker's channel (the worker's gRPC
    service has already checked the caller's token)."""

    def __init__(self, channel: Channel, replica: Replica) -> None:
        self._channel = channel
        self._replica = replica

    async def refresh(self) -> None:
        """Nothing to do: the supervisor rescans; the index arrives with each generation."""

    def index(self, ready_only: bool = False) -> list[IndexEntry]:
        generation = self._replica.generation
        rows = [IndexEntry(*row) for row in (generation.index if generation else ())]
        return [r for r in rows if r.state == "SERVING"] if ready_only else rows

    async def load(self, name: str) -> None:
        await self._ask("load", name)

    async def unload(self, name: str) -> None:
        await self._ask("unload", name)

    async def _ask(self, action: str, name: str) -> None:
        try:
            await asyncio.wrap_future(self._channel.submit("repository", action=action, name=name))
        except WorkerGone:
            raise Unavailable("the node's supervisor is not answering") from None
