"""Pictures of benchmark results (matplotlib, the ``bench`` extra), next to their tables.

latency_through_swaps(Path("docs/bench/swap_latency.png"), runs)   # runs: see below
rss_over_swaps(Path("docs/bench/swap_rss.png"), per_swap, baseline, model_bytes)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def latency_through_swaps(path: Path, runs: list[dict], bin_seconds: float = 0.5) -> None:
    """p99 latency per ``bin_seconds`` over time for each server, failed requests marked, a
    line at every swap. Each run: ``name``, ``t`` (request start, s), ``latency`` (s), ``ok``
    (1/0), ``swaps`` (s), ``swap_start`` (s, where the swap phase begins)."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(runs), 1, figsize=(9, 2.6 * len(runs)), sharex=True,
                             squeeze=False)  # fmt: skip
    for ax, run in zip(axes[:, 0], runs, strict=True):
        t, latency, ok = (np.asarray(run[k]) for k in ("t", "latency", "ok"))
        edges = np.arange(0.0, t.max() + bin_seconds, bin_seconds)
        which = np.digitize(t, edges)
        centres, p99 = [], []
        for i in np.unique(which):
            good = latency[(which == i) & (ok == 1)]
            if good.size:
                centres.append(edges[i - 1] + bin_seconds / 2)
                p99.append(np.percentile(good, 99) * 1000)
        ax.plot(centres, p99, lw=1.2, label="p99 per 0.5 s")
        for s in run["swaps"]:
            ax.axvline(s, color="#9ca3af", lw=0.6, zorder=0)
        failed = t[ok == 0]
        if failed.size:
            ax.plot(failed, np.full(failed.size, max(p99 or [1]) * 1.05), "x", color="#dc2626",
                    ms=4, label=f"failed ({failed.size})")  # fmt: skip
        ax.axvspan(run["swap_start"], t.max(), color="#fef3c7", zorder=-1, label="swap phase")
        ax.set_ylabel("ms")
        ax.set_title(run["name"], loc="left", fontsize=10)
        ax.legend(loc="upper left", fontsize=8)
    axes[-1, 0].set_xlabel("seconds (grey lines: a new version published)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def rss_over_swaps(path: Path, per_swap: list[tuple[int, int]], baseline: int, model: int) -> None:
    """Resident memory after each swap, with the baseline (one model loaded) and the
    baseline + one model bound."""
    plt = _pyplot()
    swaps, rss = zip(*per_swap, strict=True)
    fig, ax = plt.subplots(figsize=(9, 3.2))
    ax.plot(swaps, np.asarray(rss) / 1e6, lw=1, label="RSS after each swap")
    ax.axhline(baseline / 1e6, color="#16a34a", ls="--", lw=1, label="first load (baseline)")
    ax.axhline((baseline + model) / 1e6, color="#dc2626", ls=":", lw=1,
               label="baseline + one model")  # fmt: skip
    ax.set_xlabel("swaps")
    ax.set_ylabel("MB")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
