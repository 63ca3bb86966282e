"""What `baton rollout` prints for the admin API's rollout view."""

from baton.cli.rollout import format_rollout

ROLLOUT = {
    "status": "RUNNING",
    "stable": 1,
    "candidate": 2,
    "step": 0,
    "steps": [0, 50, 100],
    "weight": 0.0,
    "reason": None,
}


def window(requests, errors=0, p99=0.002, compared=0, agreed=0, max_abs_diff=0.0):
    return {
        "requests": requests,
        "errors": errors,
        "p99": p99,
        "compared": compared,
        "agreed": agreed,
        "max_abs_diff": max_abs_diff,
    }


def test_no_rollout():
    assert format_rollout("m", {"rollout": None}) == "m: no rollout in progress"


def test_shadow_step_shows_agreement_and_gate_reasons():
    view = {
        "rollout": ROLLOUT,
        "windows": {
            "1": window(400),
            "2": window(0, p99=None, compared=80, agreed=78, max_abs_diff=0.25),
        },
        "last_verdict": {"failed": True, "insufficient": False, "reasons": ["agreement 97.5%"]},
    }
    lines = format_rollout("m", view).splitlines()
    assert lines[0] == "m: RUNNING v1 → v2, step 1/3 (0% → 50% → 100%), candidate weight 0%"
    assert lines[1].split() == ["VERSION", "REQUESTS", "ERRORS", "P99", "MS", "SHADOW"]
    assert lines[3].split() == ["1", "400", "0", "2.00", "-"]
    assert lines[4].split() == ["2", "0", "0", "-", "78/80", "agree,", "max", "|diff|", "0.25"]
    assert lines[5:] == ["gates: failed", "  agreement 97.5%"]


def test_missing_window_and_waiting_verdict():
    view = {
        "rollout": {**ROLLOUT, "step": 1, "weight": 0.5, "reason": "paused by operator"},
        "windows": {"1": window(10), "2": None},
        "last_verdict": {"failed": False, "insufficient": True, "reasons": []},
    }
    lines = format_rollout("m", view).splitlines()
    assert lines[0].endswith("candidate weight 50% — paused by operator")
    assert len(lines) == 5 and lines[-1] == "gates: waiting for data"
