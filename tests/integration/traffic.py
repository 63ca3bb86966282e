"""Client threads that send inference requests continuously and log which version answered."""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import orjson

SESSIONS = [f"user-{i}" for i in range(60)]


class Traffic:
    """Clients sending continuously; half the requests carry a session key."""

    def __init__(self, url: str, value: float = 0.5, clients: int = 4):
        self.url, self.value = url, value
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.log: list[tuple[float, str | None, str]] = []  # (time, session, version)
        self.failures: list[str] = []
        self.per_client: list[list[str]] = [[] for _ in range(clients)]  # versions, in order
        self.threads = [threading.Thread(target=self._client, args=(i,)) for i in range(clients)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def _client(self, i: int) -> None:
        x = np.full((1, 4), self.value, np.float32)
        body = orjson.dumps(
            {
                "inputs": [
                    {
                        "name": "x",
                        "datatype": "FP32",
                        "shape": [1, 4],
                        "data": x.reshape(-1).tolist(),
                    }
                ]
            }
        )
        n = 0
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while not self.stop.is_set():
                n += 1
                session = SESSIONS[(n * 7 + i) % len(SESSIONS)] if n % 2 else None
                headers = {"x-baton-session": session} if session else {}
                r = http.post("/v2/models/m/infer", content=body, headers=headers)
                with self.lock:
                    if r.status_code != 200:
                        self.failures.append(f"{r.status_code} {r.text}")
                        continue
                    version = r.json()["model_version"]
                    self.log.append((time.time(), session, version))
                    self.per_client[i].append(version)
