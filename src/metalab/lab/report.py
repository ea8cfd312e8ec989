"""Markdown reports: ``<out>/index.md`` (every experiment's verdict) and one page each.

Reports are rebuilt from the store alone (``metalab report``): for each experiment the latest
finished invocation defines the config group shown; the verdict is recomputed from the stored
seeds so a report never disagrees with its numbers.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from metalab.experiments import registry
from metalab.experiments.base import Experiment, Verdict
from metalab.lab import plots
from metalab.lab.config import describe_fields
from metalab.lab.store import Invocation, Store


def _fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, bool):
        return str(x)
    ax = abs(x)
    if ax != 0 and (ax < 1e-3 or ax >= 1e5):
        return f"{x:.3g}"
    return f"{x:.4g}"


def verdict_label(verdict: Verdict | None) -> str:
    if verdict is None:
        return "incomplete"
    return "reproduced" if verdict.reproduced else "not reproduced"


def _verdict_md(v: Verdict) -> list[str]:
    lines = [
        f"**Verdict: {verdict_label(v)}.** {v.summary}",
        "",
        "| check | statistic | value | 95% CI | effect size | p-value | test | rule | passed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in v.checks:
        ci = "–" if math.isnan(c.ci[0]) else f"[{_fmt(c.ci[0])}, {_fmt(c.ci[1])}]"
        lines.append(
            f"| {c.name} | {c.statistic} | {_fmt(c.value)} | {ci} | {_fmt(c.effect_size)} | "
            f"{_fmt(c.p_value)} | {c.test or '–'} | {c.threshold} | {'yes' if c.passed else 'no'} |"
        )
    if v.notes:
        lines += ["", v.notes]
    return lines


def experiment_page(
    exp: Experiment,
    inv: Invocation,
    metrics_list: list[dict],
    verdict: Verdict | None,
    out_dir: Path,
) -> Path:
    """Write ``<out>/<name>.md`` and its figures under ``<out>/<name>/``; return the page path."""
    fig_dir = out_dir / exp.name
    if fig_dir.exists():
        shutil.rmtree(fig_dir)
    fig_dir.mkdir(parents=True)
    config = exp.config_cls(**_config_fields(exp, inv))
    lines = [
        f"# {exp.name}",
        "",
        f"*Paper:* {exp.paper.cite}",
        "",
        f"*Claim:* {exp.claim}",
        "",
        f"Preset `{inv.preset}`, {inv.seeds} seeds ({len(metrics_list)} stored), config hash "
        f"`{inv.config_hash}`, code version `{inv.code_version}`, executor `{inv.executor}`. "
        f"Compile {_fmt(inv.compile_seconds or 0.0)} s, run {_fmt(inv.run_seconds or 0.0)} s "
        "(0 s when every seed was already in the store).",
        "",
        "## Verdict",
        "",
    ]
    lines += (
        _verdict_md(verdict)
        if verdict
        else [f"Incomplete: {len(metrics_list)} of {inv.seeds} seeds are in the store."]
    )
    table = plots.scalar_table(metrics_list) if metrics_list else {}
    if table:
        lines += ["", "## Results (mean and 95% bootstrap CI over seeds)", ""]
        for group, rows in table.items():
            lines += [
                f"### {group or 'scalars'}",
                "",
                "| method | mean | 95% CI | n |",
                "|---|---|---|---|",
            ]
            lines += [
                f"| {m} | {_fmt(mu)} | [{_fmt(lo)}, {_fmt(hi)}] | {n} |"
                for m, mu, lo, hi, n in rows
            ]
            lines.append("")
    figures: list[Path] = []
    if metrics_list:
        figures += plots.plot_curves(metrics_list, fig_dir, exp.name)
        figures += plots.plot_scalars(metrics_list, fig_dir, exp.name)
        if exp.plot is not None:
            figures += list(exp.plot(metrics_list, config, fig_dir))
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{p.stem}]({exp.name}/{p.name})" for p in figures]
        lines.append("")
    lines += ["## Config", "", "| field | type | value | meaning |", "|---|---|---|---|"]
    lines += [f"| {n} | {t} | `{v}` | {d} |" for n, t, v, d in describe_fields(config)]
    page = out_dir / f"{exp.name}.md"
    _atomic_write(page, "\n".join(lines) + "\n")
    return page


def _config_fields(exp: Experiment, inv: Invocation) -> dict:
    import dataclasses

    from metalab.experiments.base import config_types

    types_ = config_types(exp.config_cls)
    out = {}
    for f in dataclasses.fields(exp.config_cls):
        v = inv.config.get(f.name, getattr(exp.config("quick"), f.name))
        if isinstance(v, list) or "tuple" in str(types_[f.name]):
            v = tuple(v) if v is not None else v
        out[f.name] = v
    return out


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def build_report(store: Store, out_dir: str | Path, names: Sequence[str] | None = None) -> Path:
    """Rebuild ``index.md`` and the pages of ``names`` (default: every stored experiment)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    reg = registry.load_all()
    latest = store.latest_invocations()
    rows = []
    selected = names if names is not None else sorted(latest)
    for name in selected:
        if name not in reg or name not in latest:
            rows.append((name, "–", "not run" if name in reg else "unknown experiment", "–"))
            continue
        exp, inv = reg[name], latest[name]
        got = store.get_results(name, inv.config_hash, inv.code_version, range(inv.seeds))
        metrics_list = [got[s] for s in sorted(got)]
        verdict = None
        if len(got) == inv.seeds:
            config = exp.config_cls(**_config_fields(exp, inv))
            verdict = exp.judge(metrics_list, config)
        experiment_page(exp, inv, metrics_list, verdict, out)
        summary = verdict.summary if verdict else ""
        rows.append((f"[{name}]({name}.md)", inv.preset, verdict_label(verdict), summary))
    lines = [
        "# metalab reproduction report",
        "",
        f"Built {time.strftime('%Y-%m-%d %H:%M:%S %Z')} from `{store.path}`.",
        "",
        "| experiment | preset | verdict | summary |",
        "|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    index = out / "index.md"
    _atomic_write(index, "\n".join(lines) + "\n")
    return index
