"""``baton models``: the table printed from the admin API's model views."""

from baton.cli.models import format_models


def view(versions, config_error=None, **extra) -> dict:
    return {"name": "m", "default_version": 1, "pinned": None, "labels": {}, "versions": versions,
            "config_error": config_error, **extra}  # fmt: skip


def version(number: int, state: str = "SERVING", **extra) -> dict:
    return {"version": number, "state": state, "inflight": 0, "message": None, **extra}


def rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()[2:]]


def test_an_invalid_model_yaml_is_shown_beside_the_versions_it_keeps_serving():
    table = format_models([view([version(1)], config_error="sequence.swap: 'migrat'")])
    assert rows(table) == [
        ["m", "1", "SERVING", "0", "default"],
        ["m", "model.yaml", "invalid", "sequence.swap:", "'migrat'"],
    ]


def test_live_sequences_are_counted_in_the_routing_column():
    table = format_models([view([version(1, sequences=1), version(2, "DRAINING", sequences=3)])])
    assert rows(table) == [
        ["m", "1", "SERVING", "0", "default", "1", "sequence"],
        ["m", "2", "DRAINING", "0", "3", "sequences"],
    ]
