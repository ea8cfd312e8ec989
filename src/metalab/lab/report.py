"""Reports: ``<out>/index.md`` (every experiment's verdict) and one page each; with
``html=True`` also ``<out>/index.html`` and ``<out>/<name>.html``, self-contained pages (styles
and figures inline, as base64 PNG) that open with a double click.

Reports are rebuilt from the store alone (``metalab report``, which opens it read-only): for
each experiment the latest finished invocation defines the config group shown; the verdict is
recomputed from the stored seeds so a report never disagrees with its numbers. Each check
shows its declared rule, statistic, CI, p (Holm-adjusted where grouped), effect size, n and
minimum detectable effect; a page says when the rules changed since an earlier verdict of the
same experiment and config, and names stored rows that could not be read.

Figures go to ``<out>/<name>/``; a rebuild replaces the files it wrote before (listed in
``<out>/<name>/.metalab-figures``) and never touches anything else there.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metalab.experiments import registry
from metalab.experiments.base import Check, Experiment, Verdict, config_types
from metalab.lab import plots
from metalab.lab.config import ConfigError, describe_fields
from metalab.lab.store import CorruptRow, Invocation, Store

MANIFEST = ".metalab-figures"


def _fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    ax = abs(x)
    if ax != 0 and (ax < 1e-3 or ax >= 1e5):
        return f"{x:.3g}"
    return f"{x:.4g}"


def verdict_label(verdict: Verdict | None) -> str:
    if verdict is None:
        return "incomplete"
    return "reproduced" if verdict.reproduced else "not reproduced"


CHECK_COLUMNS = (
    "check",
    "rule",
    "statistic",
    "value",
    "CI",
    "p",
    "p (Holm)",
    "effect size",
    "n",
    "MDE",
    "test",
    "passed",
)


def check_row(c: Check) -> list[str]:
    """The cells of one check in :data:`CHECK_COLUMNS` order (plain text)."""
    ci = "–"
    if not math.isnan(c.ci[0]):
        level = getattr(c, "ci_level", math.nan)
        pct = "" if level != level else f"{100 * level:.0f}% "
        ci = f"{pct}[{_fmt(c.ci[0])}, {_fmt(c.ci[1])}]"
    effect = _fmt(c.effect_size)
    if getattr(c, "effect_name", "") and effect != "–":
        effect = f"{effect} ({c.effect_name})"
    p_adj = getattr(c, "p_adjusted", math.nan)
    group = getattr(c, "group", "")
    holm = _fmt(p_adj) + (f" [{group}]" if group and p_adj == p_adj else "")
    n = getattr(c, "n", 0)
    return [
        c.name,
        getattr(c, "rule", "") or c.threshold,
        c.statistic,
        _fmt(c.value),
        ci,
        _fmt(c.p_value),
        holm,
        effect,
        str(n) if n else "–",
        _fmt(getattr(c, "mde", math.nan)),
        c.test or "–",
        "yes" if c.passed else "no",
    ]


@dataclass
class PageData:
    """Everything one experiment's page shows (shared by the Markdown and HTML writers)."""

    exp: Experiment
    inv: Invocation
    config: Any
    metrics_list: list[dict]
    verdict: Verdict | None
    corrupt: list[CorruptRow] = field(default_factory=list)
    rules_changed: dict | None = None
    error: str = ""
    figures: list[Path] = field(default_factory=list)

    @property
    def rules(self) -> list[str]:
        out = []
        for r in self.exp.rules:
            doc = getattr(r, "doc", "")
            text = r.text() if hasattr(r, "text") else str(r)
            out.append(f"{getattr(r, 'name', '')}: {text}" + (f" ({doc})" if doc else ""))
        return out

    @property
    def warnings(self) -> list[str]:
        out = []
        if self.rules_changed is not None:
            when = time.strftime(
                "%Y-%m-%d %H:%M", time.localtime(self.rules_changed["computed_at"])
            )
            v = self.rules_changed["verdict"]
            out.append(
                f"The declared rules changed since the verdict of {when} for this config (code "
                f"version {self.rules_changed['code_version']}, rules "
                f"{self.rules_changed['rules_hash']}, "
                f"{'reproduced' if v.get('reproduced') else 'not reproduced'}); this verdict "
                f"uses rules {self.verdict.rules_hash if self.verdict else '?'}."
            )
        for c in self.corrupt:
            out.append(f"Stored row left out (unreadable): {c}. The next run recomputes it.")
        if self.error:
            out.append(f"The verdict could not be computed: {self.error}")
        return out


def _config_fields(exp: Experiment, inv: Invocation) -> dict:
    types_ = config_types(exp.config_cls)
    out = {}
    for f in dataclasses.fields(exp.config_cls):
        v = inv.config.get(f.name, getattr(exp.config("quick"), f.name))
        if isinstance(v, list) or "tuple" in str(types_[f.name]):
            v = tuple(v) if v is not None else v
        out[f.name] = v
    return out


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _draw_figures(d: PageData, out_dir: Path) -> list[Path]:
    """Write the page's figures into ``<out>/<name>/``, replacing only files listed in the
    folder's manifest from an earlier build."""
    fig_dir = out_dir / d.exp.name
    if fig_dir.exists() and not fig_dir.is_dir():
        raise ConfigError(f"--out: {fig_dir} is a file; the report needs it as a folder")
    fig_dir.mkdir(parents=True, exist_ok=True)
    manifest = fig_dir / MANIFEST
    old = set(manifest.read_text().split("\n")) if manifest.exists() else set()
    figures: list[Path] = []
    if d.metrics_list:
        figures += plots.plot_curves(d.metrics_list, fig_dir, d.exp.name)
        figures += plots.plot_scalars(d.metrics_list, fig_dir, d.exp.name)
        if d.exp.plot is not None:
            figures += list(d.exp.plot(d.metrics_list, d.config, fig_dir))
    names = {p.name for p in figures}
    for stale in old - names - {""}:
        p = fig_dir / stale
        if p.is_file() and p.parent == fig_dir:
            p.unlink()
    _atomic_write(manifest, "\n".join(sorted(names)) + "\n")
    return figures


def _markdown(d: PageData) -> str:
    exp, inv = d.exp, d.inv
    lines = [
        f"# {exp.name}",
        "",
        f"*Paper:* {exp.paper.cite}",
        "",
        f"*Claim:* {exp.claim}",
        "",
        f"Preset `{inv.preset}`, {inv.seeds} seeds ({len(d.metrics_list)} stored), config hash "
        f"`{inv.config_hash}`, code version `{inv.code_version}`, executor `{inv.executor}`. "
        f"Compile {_fmt(inv.compile_seconds or 0.0)} s, run {_fmt(inv.run_seconds or 0.0)} s "
        "(0 s when every seed was already in the store).",
        "",
    ]
    lines += [f"> **Warning.** {w}\n" for w in d.warnings]
    lines += ["## Verdict", ""]
    v = d.verdict
    if v is None:
        lines.append(f"Incomplete: {len(d.metrics_list)} of {inv.seeds} seeds are in the store.")
    else:
        lines += [
            f"**Verdict: {verdict_label(v)}.** {v.summary}",
            "",
            "| " + " | ".join(CHECK_COLUMNS) + " |",
            "|" + "---|" * len(CHECK_COLUMNS),
        ]
        for c in v.checks:
            cells = [s.replace("|", "\\|") for s in check_row(c)]
            lines.append("| " + " | ".join(cells) + " |")
        if v.notes:
            lines += ["", v.notes]
    if d.rules:
        lines += ["", "## Declared rules", ""] + [f"* {r}" for r in d.rules]
    table = plots.scalar_table(d.metrics_list) if d.metrics_list else {}
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
    if d.figures:
        lines += ["## Figures", ""]
        lines += [f"![{p.stem}]({exp.name}/{p.name})" for p in d.figures]
        lines.append("")
    lines += ["## Config", "", "| field | type | value | meaning |", "|---|---|---|---|"]
    lines += [f"| {n} | {t} | `{v}` | {doc} |" for n, t, v, doc in describe_fields(d.config)]
    return "\n".join(lines) + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1200px;padding:0 1em;color:#1b1f24;background:#fff;line-height:1.45}
h1{margin-bottom:.2em}table{border-collapse:collapse;margin:1em 0;font-size:.9em}
th,td{border:1px solid #c9d1d9;padding:.3em .55em;text-align:left;vertical-align:top}
th{background:#eef2f6}.reproduced{background:#d8f5dd;font-weight:600}
.not-reproduced{background:#fde2c8;font-weight:600}.incomplete{background:#e8e8e8}
.pass{color:#116329;font-weight:600}.fail{color:#a40e26;font-weight:600}
.warn{background:#fff4ce;border-left:4px solid #bf8700;padding:.5em 1em;margin:1em 0}
img{max-width:100%;border:1px solid #d0d7de;margin:.5em 0}code{background:#f3f5f7;padding:0 .2em}
.meta{color:#57606a}
"""


def _esc(x: Any) -> str:
    return html.escape(str(x))


def _html_page(title: str, body: list[str]) -> str:
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _label_class(label: str) -> str:
    return label.replace(" ", "-")


def _html(d: PageData) -> str:
    exp, inv, v = d.exp, d.inv, d.verdict
    label = verdict_label(v)
    body = [
        "<p><a href='index.html'>&larr; all experiments</a></p>",
        f"<h1>{_esc(exp.name)}</h1>",
        f"<p><em>Paper:</em> {_esc(exp.paper.cite)}</p>",
        f"<p><em>Claim:</em> {_esc(exp.claim)}</p>",
        f"<p class='meta'>Preset <code>{_esc(inv.preset)}</code>, {inv.seeds} seeds "
        f"({len(d.metrics_list)} stored), config hash <code>{_esc(inv.config_hash)}</code>, "
        f"code version <code>{_esc(inv.code_version)}</code>, executor "
        f"<code>{_esc(inv.executor)}</code>; compile {_fmt(inv.compile_seconds or 0.0)} s, run "
        f"{_fmt(inv.run_seconds or 0.0)} s.</p>",
    ]
    body += [f"<div class='warn'><strong>Warning.</strong> {_esc(w)}</div>" for w in d.warnings]
    body.append("<h2>Verdict</h2>")
    body.append(
        f"<p>Verdict: <span class='verdict {_label_class(label)}'>{_esc(label)}</span> "
        f"{_esc(v.summary if v else '')}</p>"
    )
    if v is None:
        body.append(f"<p>{len(d.metrics_list)} of {inv.seeds} seeds are in the store.</p>")
    else:
        body.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in CHECK_COLUMNS) + "</tr>")
        for c in v.checks:
            cells = check_row(c)
            cls = "pass" if c.passed else "fail"
            tds = "".join(f"<td>{_esc(x)}</td>" for x in cells[:-1])
            body.append(f"<tr>{tds}<td class='{cls}'>{cells[-1]}</td></tr>")
        body.append("</table>")
        if v.notes:
            body.append(f"<p>{_esc(v.notes)}</p>")
    if d.rules:
        body.append("<h2>Declared rules</h2><ul>")
        body += [f"<li><code>{_esc(r)}</code></li>" for r in d.rules]
        body.append("</ul>")
    table = plots.scalar_table(d.metrics_list) if d.metrics_list else {}
    if table:
        body.append("<h2>Results (mean and 95% bootstrap CI over seeds)</h2>")
        for group, rows in table.items():
            body.append(f"<h3>{_esc(group or 'scalars')}</h3>")
            body.append("<table><tr><th>method</th><th>mean</th><th>95% CI</th><th>n</th></tr>")
            body += [
                f"<tr><td>{_esc(m)}</td><td>{_fmt(mu)}</td><td>[{_fmt(lo)}, {_fmt(hi)}]</td>"
                f"<td>{n}</td></tr>"
                for m, mu, lo, hi, n in rows
            ]
            body.append("</table>")
    if d.figures:
        body.append("<h2>Figures</h2>")
        for p in d.figures:
            data = base64.b64encode(p.read_bytes()).decode("ascii")
            body.append(f"<img alt='{_esc(p.stem)}' src='data:image/png;base64,{data}'>")
    body.append("<h2>Config</h2><table><tr><th>field</th><th>type</th><th>value</th>")
    body[-1] += "<th>meaning</th></tr>"
    body += [
        f"<tr><td>{_esc(n)}</td><td>{_esc(t)}</td><td><code>{_esc(val)}</code></td>"
        f"<td>{_esc(doc)}</td></tr>"
        for n, t, val, doc in describe_fields(d.config)
    ]
    body.append("</table>")
    return _html_page(f"metalab: {exp.name}", body)


def experiment_page(
    exp: Experiment,
    inv: Invocation,
    metrics_list: list[dict],
    verdict: Verdict | None,
    out_dir: Path,
    *,
    html: bool = False,
    corrupt: Sequence[CorruptRow] = (),
    rules_changed: dict | None = None,
    error: str = "",
) -> Path:
    """Write ``<out>/<name>.md`` (and ``.html``) and its figures; return the Markdown page."""
    config = exp.config_cls(**_config_fields(exp, inv))
    d = PageData(exp, inv, config, metrics_list, verdict, list(corrupt), rules_changed, error)
    d.figures = _draw_figures(d, out_dir)
    page = out_dir / f"{exp.name}.md"
    _atomic_write(page, _markdown(d))
    if html:
        _atomic_write(out_dir / f"{exp.name}.html", _html(d))
    return page


def build_report(
    store: Store,
    out_dir: str | Path,
    names: Sequence[str] | None = None,
    html: bool = False,
) -> Path:
    """Rebuild ``index.md`` (and ``index.html``) and the pages of ``names`` (default: every
    stored experiment); returns the path of ``index.md``."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; pass a directory")
    out.mkdir(parents=True, exist_ok=True)
    reg = registry.load_all()
    latest = store.latest_invocations()
    rows = []
    selected = names if names is not None else sorted(latest)
    for name in selected:
        if name not in reg or name not in latest:
            rows.append((name, None, "–", "not run" if name in reg else "unknown experiment", ""))
            continue
        exp, inv = reg[name], latest[name]
        got, corrupt = store.scan_results(name, inv.config_hash, inv.code_version, range(inv.seeds))
        metrics_list = [got[s] for s in sorted(got)]
        verdict, error = None, ""
        if len(got) == inv.seeds:
            config = exp.config_cls(**_config_fields(exp, inv))
            try:
                verdict = exp.judge(metrics_list, config)
            except Exception as e:  # a page still shows the numbers
                error = f"{type(e).__name__}: {e}"
        changed = None
        if verdict is not None:
            changed = store.rules_changed(name, inv.config_hash, verdict.rules_hash)
        experiment_page(
            exp,
            inv,
            metrics_list,
            verdict,
            out,
            html=html,
            corrupt=corrupt,
            rules_changed=changed,
            error=error,
        )
        summary = verdict.summary if verdict else error
        rows.append(
            (name, inv.preset, verdict_label(verdict), summary, "rules changed" * bool(changed))
        )
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    lines = [
        "# metalab reproduction report",
        "",
        f"Built {stamp} from `{store.path}`.",
        "",
        "| experiment | preset | verdict | summary |",
        "|---|---|---|---|",
    ]
    for name, preset, label, summary, flag in rows:
        link = f"[{name}]({name}.md)" if preset else name
        extra = f" ({flag})" if flag else ""
        lines.append(f"| {link} | {preset or '–'} | {label}{extra} | {summary} |")
    has_sweeps = _has_sweeps(store)
    if has_sweeps:
        lines += ["", "Sweeps and scaling studies: [sweeps/index.md](sweeps/index.md)."]
    index = out / "index.md"
    _atomic_write(index, "\n".join(lines) + "\n")
    if html:
        body = [
            "<h1>metalab reproduction report</h1>",
            f"<p class='meta'>Built {_esc(stamp)} from <code>{_esc(store.path)}</code>.</p>",
            "<table><tr><th>experiment</th><th>preset</th><th>verdict</th><th>summary</th></tr>",
        ]
        for name, preset, label, summary, flag in rows:
            link = f"<a href='{_esc(name)}.html'>{_esc(name)}</a>" if preset else _esc(name)
            extra = f" ({_esc(flag)})" if flag else ""
            body.append(
                f"<tr><td>{link}</td><td>{_esc(preset or '–')}</td>"
                f"<td class='verdict {_label_class(label)}'>{_esc(label)}{extra}</td>"
                f"<td>{_esc(summary)}</td></tr>"
            )
        body.append("</table>")
        if has_sweeps:
            body.append(
                "<p>Sweeps and scaling studies: <a href='sweeps/index.html'>sweeps/index.html</a>"
                "</p>"
            )
        _atomic_write(out / "index.html", _html_page("metalab reproduction report", body))
    return index


def _has_sweeps(store: Store) -> bool:
    """Whether the store holds sweeps or scaling studies (their pages live in ``sweeps/``)."""
    from metalab.lab.sweep import list_sweeps

    try:
        return bool(list_sweeps(store))
    except Exception:  # a store without the sweep tables (older or read-only): no link
        return False
