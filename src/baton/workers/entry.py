"""The target a worker process starts with, light to import: the supervisor names it without
importing what a worker needs (ONNX Runtime and the rest; the fork server has those)."""

from __future__ import annotations

from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from baton.settings import ServerSettings

__all__ = ["run_worker"]


def run_worker(conn: Connection, settings: ServerSettings, index: int, socket_path: str) -> None:
    from baton.workers.worker import worker_main

    worker_main(conn, settings, index, socket_path)
