"""The node's /metrics is the sum of its processes' — sample by sample, as Prometheus reads it."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from baton.workers.metrics import merge_metrics


def exposition(requests: int, latency: float, inflight: int, start: float, fds: int) -> bytes:
    r = CollectorRegistry()
    Counter("req", "requests", ["model"], registry=r).labels("m").inc(requests)
    Histogram("lat", "latency", registry=r, buckets=(0.1, 1.0)).observe(latency)
    Gauge("inflight", "in flight", registry=r).set(inflight)
    Gauge("process_start_time_seconds", "start", registry=r).set(start)
    Gauge("process_max_fds", "max fds", registry=r).set(fds)
    return generate_latest(r)


def samples(text: bytes) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text.decode())
        for s in f.samples
    }


@pytest.mark.parametrize(
    ("name", "labels", "expected"),
    [
        ("req_total", (("model", "m"),), 5.0),  # counters add up
        ("lat_bucket", (("le", "0.1"),), 1.0),  # histogram buckets add up
        ("lat_bucket", (("le", "1.0"),), 2.0),
        ("lat_count", (), 2.0),
        ("lat_sum", (), 0.55),
        ("inflight", (), 7.0),  # in flight on the node
        ("process_start_time_seconds", (), 100.0),  # the earliest
        ("process_max_fds", (), 4096.0),  # the largest
    ],
)
def test_samples_combine_as_their_meaning_says(name, labels, expected):
    merged = samples(merge_metrics([exposition(2, 0.05, 3, 100.0, 1024),
                                    exposition(3, 0.5, 4, 200.0, 4096)]))  # fmt: skip
    assert merged[(name, labels)] == pytest.approx(expected)


def test_one_process_comes_back_as_it_was():
    text = exposition(2, 0.05, 3, 100.0, 1024)
    assert samples(merge_metrics([text])) == samples(text)
    assert b"# TYPE req_total counter" in merge_metrics([text])


def test_a_sample_only_one_process_has_is_kept():
    r = CollectorRegistry()
    Counter("swaps", "swaps", ["model"], registry=r).labels("m").inc()
    merged = samples(merge_metrics([generate_latest(r), exposition(1, 0.1, 0, 1.0, 1)]))
    assert merged[("swaps_total", (("model", "m"),))] == 1.0
    assert merged[("req_total", (("model", "m"),))] == 1.0
