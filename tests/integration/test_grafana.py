"""The Grafana board (deploy/grafana/baton.json) queries only metrics a running server exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

BOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "baton.json"
METRIC = re.compile(r"\b((?:baton|process)_[a-z_]+)\b")
SUFFIXES = ("_bucket", "_count", "_sum")


def board_queries() -> list[str]:
    board = json.loads(BOARD.read_text())
    queries = [t["expr"] for p in board["panels"] for t in p["targets"]]
    queries += [v["query"] for v in board["templating"]["list"] if v["type"] == "query"]
    return queries


def test_every_metric_the_board_queries_is_exported(server_factory, repo):
    queries = board_queries()
    wanted = {name for q in queries for name in METRIC.findall(q)}
    assert len(queries) >= 14 and len(wanted) >= 15, wanted
    server = server_factory(repo)
    text = httpx.get(f"{server.url}/metrics").text
    declared = set(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    names = {name for name, _ in declared}
    histograms = {name for name, kind in declared if kind == "histogram"}
    missing = sorted(
        name
        for name in wanted
        if name not in names
        and not (name.endswith(SUFFIXES) and name.rsplit("_", 1)[0] in histograms)
    )
    assert missing == [], f"the board queries metrics the server does not export: {missing}"


def test_the_board_is_a_grafana_dashboard_over_a_prometheus_datasource():
    board = json.loads(BOARD.read_text())
    assert board["uid"] == "baton" and board["panels"]
    titles = {p["title"] for p in board["panels"]}
    for topic in ("Traffic share", "Latency", "Errors", "Swaps", "Failed loads", "Rollout weight",
                  "Rollbacks", "Memory", "Fleet convergence"):  # fmt: skip
        assert any(title.startswith(topic) for title in titles), topic
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"], panel["title"]
