"""Reports of sweeps and scaling studies: each check's effect against the swept field.

For every check of the experiment and every numeric swept field, one figure: the check's value
at each point with its CI (filled marker: the check passed there; hollow: it did not), the
fitted trend (:func:`metalab.lab.sweep_trend.fit_trend`, log10 x when the field spans decades)
and a dashed line where the claim starts to hold (:func:`metalab.lab.sweep_trend.onset`).
When several fields are swept, the other fields' values split the points into one line each.

Pages are written as Markdown (``<out>/sweeps/<experiment>-<id>.md``, figures beside it) and,
on request, as one self-contained HTML page each (figures inlined) for the lab's HTML report.
"""

from __future__ import annotations

import base64
import html as html_lib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from metalab.lab.store import Store  # noqa: E402
from metalab.lab.sweep import SweepDB, SweepSummary, find_sweep, list_sweeps  # noqa: E402
from metalab.lab.sweep_trend import Onset, TrendFit, fit_trend, onset, spans_decades  # noqa: E402

__all__ = [
    "CheckCurve",
    "SweepAnalysis",
    "analyse",
    "plot_curves",
    "summary_lines",
    "write_sweep_page",
    "write_sweep_reports",
]


@dataclass(frozen=True)
class CheckCurve:
    """One check's values along one swept field (other swept fields fixed at ``group``)."""

    check: str
    field: str
    group: tuple[tuple[str, Any], ...]
    x: np.ndarray
    value: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    p: np.ndarray
    passed: np.ndarray
    seeds: np.ndarray
    trend: TrendFit
    onset: Onset
    statistic: str = ""
    null: tuple[float, ...] = ()

    @property
    def group_text(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.group) or "all points"


@dataclass(frozen=True)
class SweepAnalysis:
    summary: SweepSummary
    points: list[dict[str, Any]]
    checks: tuple[str, ...]
    curves: tuple[CheckCurve, ...]
    log_x: dict[str, bool]


def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def analyse(store: Store | str, ref: str) -> SweepAnalysis:
    """Trend and onset of every check along every numeric swept field of a stored sweep."""
    store = store if isinstance(store, Store) else Store(store)
    summary = find_sweep(store, ref)
    points = SweepDB(store).points(summary.id)
    checks: list[str] = []
    for p in points:
        for c in p["checks"] or []:
            if c["name"] not in checks:
                checks.append(c["name"])
    swept = [(f, vals) for f, vals in summary.axes if len(vals) > 1]
    log_x = {f: spans_decades(vals) for f, vals in swept if _numeric(vals)}
    curves = []
    for name in checks:
        for f, _vals in swept:
            if f not in log_x:
                continue  # a categorical field: shown in the tables, no trend
            others = [g for g, _ in swept if g != f]
            groups: dict[tuple, list[tuple[float, dict, int]]] = {}
            for p in points:
                c = next((c for c in p["checks"] or [] if c["name"] == name), None)
                if c is None:
                    continue
                key = tuple((g, _hashable(p["values"].get(g))) for g in others)
                groups.setdefault(key, []).append((float(p["values"][f]), c, p["seeds_done"]))
            for key, items in groups.items():
                items.sort(key=lambda t: t[0])
                x = np.array([t[0] for t in items])
                col = {
                    k: np.array([t[1].get(k, np.nan) for t in items], dtype=np.float64)
                    for k in ("value", "ci_low", "ci_high", "p_adjusted", "ci_level")
                }
                passed = np.array([bool(t[1]["passed"]) for t in items])
                trend = fit_trend(
                    x,
                    col["value"],
                    col["ci_low"],
                    col["ci_high"],
                    log_x[f],
                    ci_level=col["ci_level"],
                    toward=items[0][1].get("toward"),
                )
                curves.append(
                    CheckCurve(
                        name,
                        f,
                        key,
                        x,
                        col["value"],
                        col["ci_low"],
                        col["ci_high"],
                        col["p_adjusted"],
                        passed,
                        np.array([t[2] for t in items]),
                        trend,
                        onset(x, passed),
                        str(items[0][1].get("statistic", "")),
                        tuple(items[0][1].get("null") or ()),
                    )
                )
    return SweepAnalysis(summary, points, tuple(checks), tuple(curves), log_x)


def _hashable(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:60] or "check"


def plot_curves(analysis: SweepAnalysis, out_dir: Path) -> dict[tuple[str, str], Path]:
    """One PNG per (check, field); returns ``{(check, field): path}``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[tuple[str, str], Path] = {}
    for k, name in enumerate(analysis.checks):
        for f, log in analysis.log_x.items():
            curves = [
                c
                for c in analysis.curves
                if c.check == name and c.field == f and np.isfinite(c.value).any()
            ]
            if not curves:  # nothing to draw (e.g. a statistic undefined at every point)
                continue
            fig, ax = plt.subplots(figsize=(6.4, 4.2))
            for i, c in enumerate(curves):
                colour = f"C{i % 10}"
                lo = np.where(np.isfinite(c.ci_low), c.value - c.ci_low, 0.0)
                hi = np.where(np.isfinite(c.ci_high), c.ci_high - c.value, 0.0)
                ax.errorbar(c.x, c.value, yerr=[lo, hi], color=colour, fmt="none", capsize=3)
                label = c.group_text if len(curves) > 1 else "value (its CI)"
                ax.plot(c.x, c.value, "-", color=colour, alpha=0.35)
                ax.scatter(c.x[c.passed], c.value[c.passed], color=colour, zorder=3, label=label)
                ax.scatter(
                    c.x[~c.passed],
                    c.value[~c.passed],
                    facecolors="white",
                    edgecolors=colour,
                    zorder=3,
                )
                t = c.trend
                if math.isfinite(t.slope):
                    xs = np.linspace(c.x.min(), c.x.max(), 50)
                    if log:
                        xs = np.logspace(np.log10(c.x.min()), np.log10(c.x.max()), 50)
                    xt = np.log10(xs) if log else xs
                    lo_s, hi_s = t.ci
                    ci = "" if not math.isfinite(lo_s) else f" [{lo_s:.2g}, {hi_s:.2g}]"
                    ax.plot(
                        xs,
                        t.intercept + t.slope * xt,
                        "--",
                        color=colour,
                        lw=1,
                        label=f"trend: slope {t.slope:.2g}{ci} {t.per}",
                    )
                if c.onset.value is not None:
                    ax.axvline(c.onset.value, color=colour, ls=":", lw=1.2)
            for k0, y0 in enumerate(curves[0].null):
                ax.axhline(
                    y0, color="grey", lw=0.8, label="null (the rule's boundary)" if not k0 else None
                )
            if log:
                ax.set_xscale("log")
            ax.set_xlabel(f)
            ax.set_ylabel(curves[0].statistic[:45] or "value", fontsize=8)
            title = f"{analysis.summary.experiment}: {name}"
            ax.set_title(title if len(title) < 80 else title[:77] + "...", fontsize=8)
            ax.legend(fontsize=7, title="filled: passes; dotted: holds from", title_fontsize=7)
            fig.tight_layout()
            path = out_dir / f"check{k}_{_safe(f)}.png"
            fig.savefig(path, dpi=100)
            plt.close(fig)
            paths[(name, f)] = path
    return paths


def summary_lines(analysis: SweepAnalysis) -> list[str]:
    """One line per (check, field, group): the fitted trend and where the claim holds."""
    lines = []
    for c in analysis.curves:
        grp = "" if not c.group else f" [{c.group_text}]"
        lines.append(
            f"{c.check} vs {c.field}{grp}: {c.trend.describe(c.field)}; {c.onset.describe(c.field)}"
        )
    for name in analysis.checks:
        if not any(c.check == name for c in analysis.curves):
            passes = [
                p["idx"]
                for p in analysis.points
                if any(c["name"] == name and c["passed"] for c in p["checks"] or [])
            ]
            lines.append(f"{name}: passes at points {passes or 'none'} (no numeric field)")
    return lines


def _level(level: Any) -> str:
    try:
        lv = float(level)
    except (TypeError, ValueError):
        return ""
    return f" ({lv:.0%})" if math.isfinite(lv) else ""


def _fmt(x: Any) -> str:
    if isinstance(x, bool) or x is None:
        return str(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if math.isnan(x):
            return "–"
        ax = abs(x)
        return f"{x:.3g}" if ax != 0 and (ax < 1e-3 or ax >= 1e5) else f"{x:.4g}"
    if isinstance(x, list):
        return "(" + ", ".join(_fmt(v) for v in x) + ")"
    return str(x)


def _blocks(analysis: SweepAnalysis, figures: dict[tuple[str, str], Path]) -> list[tuple]:
    """The page as blocks: ("h", level, text), ("p", text), ("table", header, rows),
    ("img", path, alt)."""
    s = analysis.summary
    fields = [f for f, _ in s.axes]
    versions = sorted({p["code_version"] for p in analysis.points})
    what = "Scaling study" if s.kind == "scale" else "Sweep"
    blocks: list[tuple] = [
        ("h", 1, f"{what} {s.id}: {s.experiment}"),
        (
            "p",
            f"Command: `{s.command}`. Preset `{s.preset}`, seeds "
            f"{'per rung' if s.seeds is None and s.kind == 'scale' else s.seeds or 'default'}; "
            f"axes: {s.axes_text}. {s.status}"
            + (f" ({s.failed} failed)" if s.failed else "")
            + f". Code version {', '.join(versions)}. "
            + (s.note or ""),
        ),
        (
            "p",
            "Each check is the experiment's declared rule judged on the seeds of one point "
            "(value with its CI at the level the rule reports, p Holm-adjusted within the "
            "experiment's groups). Points "
            "are not adjusted across the sweep: the trend's slope (weighted by the points' CIs) "
            "is the sweep-level evidence, and a claim is said to hold from the value at which it "
            "passes there and at every larger value tried.",
        ),
    ]
    if analysis.curves:
        blocks.append(("h", 2, "Trends"))
        rows = []
        for c in analysis.curves:
            rows.append(
                [
                    c.check,
                    c.field + ("" if not c.group else f" ({c.group_text})"),
                    c.trend.describe(c.field),
                    c.onset.describe(c.field),
                ]
            )
        blocks.append(("table", ["check", "along", "fitted trend", "where the claim holds"], rows))
    for name in analysis.checks:
        blocks.append(("h", 2, name))
        for f in analysis.log_x:
            if (name, f) in figures:
                blocks.append(("img", figures[(name, f)], f"{name} vs {f}"))
        rows = []
        for p in analysis.points:
            c = next((c for c in p["checks"] or [] if c["name"] == name), None)
            if c is None:
                continue
            rows.append(
                [str(p["idx"])]
                + [_fmt(p["values"].get(f)) for f in fields]
                + [
                    str(p["seeds_done"]),
                    _fmt(c["value"]),
                    f"[{_fmt(c['ci_low'])}, {_fmt(c['ci_high'])}]" + _level(c.get("ci_level")),
                    _fmt(c["p_value"]),
                    _fmt(c["p_adjusted"]),
                    _fmt(c["mde"]),
                    "yes" if c["passed"] else "no",
                ]
            )
        header = ["point", *fields, "seeds", "value", "CI", "p", "p adj.", "MDE", "passed"]
        blocks.append(("table", header, rows))
    blocks.append(("h", 2, "Points"))
    rows = [
        [str(p["idx"])]
        + [_fmt(p["values"].get(f)) for f in fields]
        + [
            p["preset"],
            f"{p['seeds_done']}/{p['seeds']}",
            p["status"],
            _fmt(p["seconds"]),
            f"`{p['config_hash']}`",
        ]
        for p in analysis.points
    ]
    blocks.append(
        ("table", ["point", *fields, "preset", "seeds", "status", "seconds", "config"], rows)
    )
    return blocks


def _markdown(blocks: list[tuple], rel_to: Path) -> str:
    out = []
    for b in blocks:
        if b[0] == "h":
            out += ["#" * b[1] + " " + b[2], ""]
        elif b[0] == "p":
            out += [b[1], ""]
        elif b[0] == "img":
            out += [f"![{b[2]}]({b[1].relative_to(rel_to).as_posix()})", ""]
        else:
            _, header, rows = b
            cell = lambda t: str(t).replace("|", "\\|")  # noqa: E731
            out.append("| " + " | ".join(map(cell, header)) + " |")
            out.append("|" + "---|" * len(header))
            out += ["| " + " | ".join(map(cell, r)) + " |" for r in rows]
            out.append("")
    return "\n".join(out) + "\n"


def _html(blocks: list[tuple], title: str) -> str:
    esc = html_lib.escape
    body = []
    for b in blocks:
        if b[0] == "h":
            body.append(f"<h{b[1]}>{esc(b[2])}</h{b[1]}>")
        elif b[0] == "p":
            body.append(f"<p>{esc(b[1])}</p>")
        elif b[0] == "img":
            data = base64.b64encode(b[1].read_bytes()).decode()
            body.append(f'<img alt="{esc(b[2])}" src="data:image/png;base64,{data}">')
        else:
            _, header, rows = b
            head = "".join(f"<th>{esc(str(h))}</th>" for h in header)
            trs = "".join(
                "<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in r) + "</tr>" for r in rows
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{trs}</tbody></table>")
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}img{max-width:100%}"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )


def page_name(summary: SweepSummary) -> str:
    return f"{summary.experiment}-{summary.kind}-{summary.id}"


def write_sweep_page(
    store: Store | str, ref: str, out_dir: str | Path, html: bool = False
) -> tuple[Path, Path | None, SweepAnalysis]:
    """Write ``<out>/sweeps/<page>.md`` (+ ``.html`` if asked) and its figures."""
    analysis = analyse(store, ref)
    root = Path(out_dir) / "sweeps"
    name = page_name(analysis.summary)
    figures = plot_curves(analysis, root / name)
    blocks = _blocks(analysis, figures)
    md = root / f"{name}.md"
    _atomic_write(md, _markdown(blocks, root))
    page = None
    if html:
        page = root / f"{name}.html"
        _atomic_write(page, _html(blocks, f"{analysis.summary.experiment} {name}"))
    return md, page, analysis


def write_sweep_reports(
    store: Store | str, out_dir: str | Path, html: bool = False, experiments=None
) -> list[tuple[SweepSummary, Path, Path | None]]:
    """Write a page per stored sweep and ``<out>/sweeps/index.md``; returns
    ``[(summary, markdown page, html page or None)]`` for the report's index."""
    store = store if isinstance(store, Store) else Store(store)
    sweeps = [s for s in list_sweeps(store) if experiments is None or s.experiment in experiments]
    out = []
    for s in sweeps:
        md, page, _ = write_sweep_page(store, s.id, out_dir, html)
        out.append((s, md, page))
    if out:
        root = Path(out_dir) / "sweeps"
        lines = [
            "# Sweeps and scaling studies",
            "",
            f"Built {time.strftime('%Y-%m-%d %H:%M:%S %Z')}.",
            "",
            "| sweep | kind | experiment | axes | status |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| [{s.id}]({md.name}) | {s.kind} | {s.experiment} | {s.axes_text} | {s.status} |"
            for s, md, _ in out
        ]
        _atomic_write(root / "index.md", "\n".join(lines) + "\n")
        if html:
            rows = [
                [f"{s.id}", s.kind, s.experiment, s.axes_text, s.status, page.name]
                for s, _, page in out
                if page is not None
            ]
            blocks = [
                ("h", 1, "Sweeps and scaling studies"),
                ("table", ["sweep", "kind", "experiment", "axes", "status", "page"], rows),
            ]
            text = _html(blocks, "metalab sweeps")
            for _s, _, page in out:  # link each page from the index
                if page is not None:
                    text = text.replace(
                        f"<td>{page.name}</td>", f"<td><a href='{page.name}'>{page.name}</a></td>"
                    )
            _atomic_write(root / "index.html", text)
    return out


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
