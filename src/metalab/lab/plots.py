"""Generic figures drawn from the metrics convention of :mod:`metalab.experiments.base`.

* curve groups (1-d metrics ``"group/method"``): mean over seeds with a 95% t-interval band;
* scalar groups (0-d metrics ``"group/method"``): per-method mean with 95% bootstrap CI bars
  and the individual seeds as dots.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats as sps  # noqa: E402

from metalab.core.stats import bootstrap_ci  # noqa: E402

Metrics = dict[str, np.ndarray]


def split_key(key: str) -> tuple[str, str]:
    group, _, method = key.partition("/")
    return (group, method) if method else ("", group)


def grouped(metrics_list: Sequence[Metrics], ndim: int) -> dict[str, dict[str, np.ndarray]]:
    """``{group: {method: array stacked over seeds}}`` for metrics of the given ndim."""
    out: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
    if not metrics_list:
        return {}
    for key in sorted(metrics_list[0]):
        if "@" in key:
            continue
        first = np.asarray(metrics_list[0][key])
        if first.ndim != ndim or first.dtype.kind not in "fiub":
            continue
        try:
            stacked = np.stack([np.asarray(m[key], dtype=np.float64) for m in metrics_list])
        except (KeyError, ValueError):
            continue
        group, method = split_key(key)
        out[group][method] = stacked
    return dict(out)


def scalar_table(
    metrics_list: Sequence[Metrics],
) -> dict[str, list[tuple[str, float, float, float, int]]]:
    """``{group: [(method, mean, ci_low, ci_high, n)]}`` with 95% bootstrap CIs."""
    table = {}
    for group, methods in grouped(metrics_list, 0).items():
        rows = []
        for method, vals in methods.items():
            m, lo, hi = bootstrap_ci(vals)
            rows.append((method, m, lo, hi, int(vals.size)))
        table[group] = rows
    return table


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "metric"


def _min_positive(methods: dict[str, np.ndarray]) -> float:
    vals = np.concatenate([v.ravel() for v in methods.values()])
    pos = vals[vals > 0]
    return float(pos.min()) if pos.size else 1.0


def _wants_log(methods: dict[str, np.ndarray]) -> bool:
    """Log scale for non-negative curves spanning more than three decades."""
    vals = np.concatenate([v.ravel() for v in methods.values()])
    if vals.size == 0 or vals.min() < 0 or vals.max() <= 0:
        return False
    return bool(vals.max() / _min_positive(methods) > 1e3)


def plot_curves(metrics_list: Sequence[Metrics], out_dir: Path, title: str) -> list[Path]:
    paths = []
    for group, methods in grouped(metrics_list, 1).items():
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        xkey = f"{group}@x"
        log = _wants_log(methods)
        for method, ys in methods.items():
            n, t = ys.shape
            x = np.asarray(metrics_list[0][xkey]) if xkey in metrics_list[0] else np.arange(t)
            if log:  # curves over decades: median and interquartile range, robust to outliers
                centre = np.median(ys, axis=0)
                low, high = np.percentile(ys, [25, 75], axis=0)
            else:
                centre = ys.mean(0)
                half = sps.sem(ys, axis=0) * sps.t.ppf(0.975, n - 1) if n > 1 else 0 * centre
                low, high = centre - half, centre + half
            ax.plot(x, centre, label=method or group)
            if n > 1:
                ax.fill_between(x, low, high, alpha=0.2)
        how = "median, IQR" if log else "mean, 95% CI"
        ax.set_title(
            f"{title}: {group or 'curve'} ({how} over {len(metrics_list)} seeds)", fontsize=9
        )
        ax.set_xlabel("step")
        ax.set_ylabel(group)
        if log:
            ax.set_yscale("log")
            ax.set_ylim(bottom=_min_positive(methods))
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"curve_{_safe(group)}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_scalars(metrics_list: Sequence[Metrics], out_dir: Path, title: str) -> list[Path]:
    paths = []
    for group, methods in grouped(metrics_list, 0).items():
        if len(methods) < 2:
            continue
        names = list(methods)
        fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(names) + 2), 3.8))
        for i, name in enumerate(names):
            vals = methods[name]
            m, lo, hi = bootstrap_ci(vals)
            ax.bar(i, m, color="C0", alpha=0.6)
            ax.errorbar(i, m, yerr=[[m - lo], [hi - m]], color="k", capsize=4)
            jitter = (np.arange(vals.size) - vals.size / 2) * 0.03
            ax.scatter(i + jitter, vals, s=8, color="k", zorder=3)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{title}: {group} (mean, 95% bootstrap CI)", fontsize=9)
        fig.tight_layout()
        path = out_dir / f"compare_{_safe(group)}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
