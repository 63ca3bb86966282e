import pytest

from baton.serving.split import WeylSequence, key_point, split_point


@pytest.mark.parametrize("weight", [0.01, 0.05, 0.1, 0.25, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("n", [100, 1000, 10_000])
def test_unkeyed_traffic_matches_the_weight_closely(weight, n):
    seq = WeylSequence()
    hits = sum(seq.next() < weight for _ in range(n))
    # Weyl discrepancy: at most a handful of requests off, whatever n (random would be ~sqrt(n)).
    assert abs(hits - weight * n) <= 3, (hits, weight * n)


def test_key_points_are_stable_and_spread():
    assert key_point("user-42") == key_point("user-42")
    points = [key_point(f"session-{i}") for i in range(20_000)]
    assert all(0.0 <= p < 1.0 for p in points)
    for w in (0.1, 0.5, 0.9):
        share = sum(p < w for p in points) / len(points)
        assert abs(share - w) < 0.015  # hashing is uniform, within sampling error


def test_raising_the_weight_moves_only_new_sessions_and_never_back():
    sessions = [f"s{i}" for i in range(5000)]
    weights = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0]
    on_candidate: set[str] = set()
    for w in weights:
        now = {s for s in sessions if key_point(s) < w}
        assert on_candidate <= now  # nobody who moved to the candidate moves back
        on_candidate = now
    assert on_candidate == set(sessions)


def test_split_point_uses_the_key_when_present():
    seq = WeylSequence()
    assert split_point("abc", seq) == key_point("abc")
    assert split_point(None, seq) == 0.0 and split_point("", seq) == pytest.approx(0.618, 1e-3)
