"""Scaling studies: ``metalab scale NAME --budget 30m`` climbs the experiment's declared ladder.

An experiment declares ``ladder=`` on its :class:`~metalab.experiments.base.Experiment`: a tuple
of rungs, cheapest first, each a dict of config overrides (plain values, e.g.
``{"preset": "quick", "size": 30, "num_episodes": 3000, "seeds": 10}``) with two optional
special keys, ``"preset"`` (the base preset of the rung, default ``"smoke"``) and ``"seeds"``
(default: the experiment's seeds for that preset). The **scale knob** plotted on the x axis is
the first config field named by any rung (its value is read from each rung's resolved config);
if it is not numeric and strictly increasing along the ladder, the rung number is used instead.

The command validates the whole ladder and the budget first (exit 2 on a bad one, nothing
run), then runs the rungs in order, each as a ``metalab run`` child process (so a rung that
would overrun the budget is stopped at the budget: its finished seeds are stored and the next
invocation resumes them). Before a rung starts, its time is predicted from the previous rungs'
(the last time times the last growth factor); a rung predicted to take more than twice the
remaining budget is skipped and the climb stops there. Every rung with at least two seeds
stored is judged (a stopped rung on the seeds it finished, and said so), and the study is
stored and reported as a sweep of kind ``scale`` (see :mod:`metalab.lab.sweep`).
"""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from metalab.experiments import registry
from metalab.experiments.base import PRESETS
from metalab.lab.config import ConfigError
from metalab.lab.runner import resolve
from metalab.lab.store import Store
from metalab.lab.sweep import (
    Axis,
    PointOutcome,
    SweepDB,
    SweepPlan,
    SweepPoint,
    check_rows,
    jsonable,
    judge_available,
    sweep_id,
)

__all__ = ["RUNG_KEYS", "ladder_overrides", "parse_budget", "plan_scale", "run_scale"]

RUNG_KEYS = ("preset", "seeds")
GRACE_SECONDS = 15.0


def parse_budget(text: str) -> float:
    """Seconds in a budget such as ``30m``, ``90s``, ``1h30m``, ``2.5m`` or ``600``."""
    t = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        seconds = float(t)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", t)
        if not parts or "".join(n + u for n, u in parts) != t:
            raise ConfigError(
                f"--budget: got {text!r}; give a duration such as 30m, 90s, 1h30m or 600"
            )
        unit = {"h": 3600.0, "m": 60.0, "s": 1.0}
        seconds = sum(float(n) * unit[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"--budget: got {text!r}; must be a positive duration")
    return seconds


def _text(v: Any) -> str:
    """A config value as ``metalab run`` override text."""
    if isinstance(v, tuple | list):
        return ",".join(_text(x) for x in v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    return repr(v) if isinstance(v, float) else str(v)


def ladder_overrides(rung: Mapping[str, Any]) -> tuple[str, ...]:
    """A rung's config overrides as ``field=value`` texts (special keys left out)."""
    return tuple(f"{k}={_text(v)}" for k, v in rung.items() if k not in RUNG_KEYS)


def _knob(ladder: Sequence[Mapping[str, Any]]) -> str | None:
    for rung in ladder:
        for k in rung:
            if k not in RUNG_KEYS:
                return k
    return None


def plan_scale(name: str, chunk: int | None = None, command: str = "") -> SweepPlan:
    """Validate an experiment's ladder completely (every rung resolved) before anything runs."""
    try:
        exp = registry.get(name)
    except KeyError as e:
        raise ConfigError(str(e.args[0])) from None
    ladder = tuple(getattr(exp, "ladder", ()) or ())
    if not ladder:
        have = [n for n, e in registry.load_all().items() if getattr(e, "ladder", ())]
        raise ConfigError(
            f"{exp.name} declares no scale ladder; experiments with one: "
            f"{', '.join(have) or 'none'}"
        )
    specs = []
    for i, rung in enumerate(ladder):
        if not isinstance(rung, Mapping):
            raise ConfigError(f"{exp.name}: ladder rung {i} is not a dict")
        preset = rung.get("preset", "smoke")
        if preset not in PRESETS:
            raise ConfigError(
                f"{exp.name}: ladder rung {i}: preset {preset!r}; allowed: {', '.join(PRESETS)}"
            )
        seeds = rung.get("seeds")
        if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int)):
            raise ConfigError(f"{exp.name}: ladder rung {i}: seeds must be an int, got {seeds!r}")
        try:
            spec = resolve(exp.name, preset, seeds, ladder_overrides(rung), "local", chunk)
        except ConfigError as e:
            raise ConfigError(f"{exp.name}: ladder rung {i}: {e}") from None
        specs.append(spec)
    knob = _knob(ladder)
    xs = [getattr(s.config, knob) for s in specs] if knob else []
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in xs)
    if not knob or not numeric or any(b <= a for a, b in zip(xs, xs[1:], strict=False)):
        knob, xs = "rung", list(range(len(specs)))
    points = tuple(
        SweepPoint(i, {knob: jsonable(x)}, ladder_overrides(r), s)
        for i, (x, r, s) in enumerate(zip(xs, ladder, specs, strict=True))
    )
    axis = Axis(knob, tuple(str(x) for x in xs), tuple(xs))
    payload = [dict(r) for r in ladder]
    sid = sweep_id("scale", exp.name, "ladder", None, jsonable(payload))
    return SweepPlan(sid, "scale", exp.name, "ladder", None, (axis,), points, command)


@dataclass
class ScaleOutcome:
    plan: SweepPlan
    points: list[PointOutcome]
    budget: float
    used: float
    note: str


def _child_command(point: SweepPoint, store: Store, out_dir: str, chunk: int | None) -> list[str]:
    spec = point.spec
    cmd = [sys.executable, "-m", "metalab.lab.cli", "run", spec.exp.name]
    cmd += ["--preset", spec.preset, "--seeds", str(spec.seeds), "--store", str(store.path)]
    cmd += ["--out", out_dir]
    if chunk:
        cmd += ["--chunk", str(chunk)]
    return cmd + list(point.overrides)


def _stop(proc: subprocess.Popen) -> None:
    """Interrupt the rung's child (it stores finished seeds), then kill it if it lingers.

    SIGTERM, not SIGINT: the CLI treats both alike (finished seeds stored, exit 130), but a
    process started in the background by a non-interactive shell inherits SIGINT *ignored*
    (POSIX), and so would every child of a backgrounded ``metalab scale``.
    """
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_scale(
    plan: SweepPlan,
    store: Store,
    budget: float,
    chunk: int | None = None,
    on_point: Callable[[PointOutcome], None] | None = None,
    say: Callable[[str], None] = print,
) -> ScaleOutcome:
    """Climb the ladder cheapest first until the budget (seconds) is spent."""
    db = SweepDB(store)
    db.register(plan)
    t0 = time.monotonic()
    times: list[float] = []  # seconds of the rungs computed so far (this invocation)
    outcomes: list[PointOutcome] = []
    note = ""
    stopped = False
    with tempfile.TemporaryDirectory(prefix="metalab-scale-") as tmp:
        for point in plan.points:
            spec = point.spec
            if stopped:
                db.update_point(plan.id, point.index, status="skipped")
                outcomes.append(PointOutcome(point, "skipped"))
                continue
            done = store.finished_seeds(spec.exp.name, spec.config_hash, spec.code_version)
            need = [s for s in range(spec.seeds) if s not in done]
            remaining = budget - (time.monotonic() - t0)
            status, seconds = "done", 0.0
            if need:
                predicted = None
                if len(times) >= 2 and times[-2] > 0:
                    predicted = times[-1] * max(1.0, times[-1] / times[-2])
                elif times:
                    predicted = times[-1]
                if remaining <= 1.0 or (predicted is not None and predicted > 2 * remaining):
                    why = (
                        "the budget is spent"
                        if remaining <= 1.0
                        else f"predicted {predicted:.0f}s > twice the remaining {remaining:.0f}s"
                    )
                    note = f"stopped before rung {point.index}: {why}"
                    say(f"{plan.experiment}: {note}")
                    db.update_point(plan.id, point.index, status="skipped")
                    outcomes.append(PointOutcome(point, "skipped"))
                    stopped = True
                    continue
                say(
                    f"{plan.experiment}: rung {point.index} ({spec.preset}, {spec.seeds} seeds, "
                    f"{' '.join(point.overrides) or 'preset as is'}); {remaining:.0f}s left"
                )
                db.update_point(plan.id, point.index, status="running")
                r0 = time.monotonic()
                cmd = _child_command(point, store, os.path.join(tmp, str(point.index)), chunk)
                proc = subprocess.Popen(cmd)  # noqa: S603 (our own CLI)
                try:
                    code = proc.wait(timeout=max(remaining, 1.0))
                except subprocess.TimeoutExpired:
                    _stop(proc)
                    code = None
                except BaseException:
                    _stop(proc)
                    db.update_point(plan.id, point.index, status="partial")
                    raise
                seconds = time.monotonic() - r0
                times.append(seconds)
                if code is None:
                    status = "partial"
                    note = f"the budget ran out during rung {point.index}"
                    stopped = True
                elif code not in (0, 3):
                    status = "failed"
            verdict, got = judge_available(spec, store)
            if status in ("done", "partial"):
                status = "done" if got >= spec.seeds else "partial"
            checks = check_rows(verdict, spec.exp) if verdict is not None else None
            db.update_point(
                plan.id,
                point.index,
                status=status,
                seeds_done=got,
                checks=checks,
                **({"seconds": seconds} if need else {}),
            )
            res = PointOutcome(point, status, seconds, len(need), spec.seeds - len(need), checks)
            outcomes.append(res)
            if on_point:
                on_point(res)
    used = time.monotonic() - t0
    if not note:
        note = "every rung finished within the budget"
    db.finish(plan.id, note=f"budget {budget:.0f}s, used {used:.0f}s; {note}")
    return ScaleOutcome(plan, outcomes, budget, used, note)


# -- the ``metalab scale`` command (registered in metalab.lab.cli) -------------------------------


def configure(sp: Any) -> None:
    """Arguments of ``metalab scale``."""
    from metalab.lab.cli import DEFAULT_OUT, add_store_option

    sp.add_argument("name", help="experiment (it must declare a ladder)")
    sp.add_argument("--budget", default="30m", help="wall-clock budget, e.g. 30m, 90s, 1h30m")
    add_store_option(sp)
    sp.add_argument("--out", default=str(DEFAULT_OUT), help="report directory")
    sp.add_argument("--chunk", type=int, default=None, help="seeds per compiled call")
    sp.add_argument("--dry-run", action="store_true", help="print the ladder and exit")


def main(args: Any) -> int:
    """``metalab scale``: validate the ladder and budget, climb it, report the trend."""
    from rich.console import Console
    from rich.markup import escape

    from metalab.lab import cli
    from metalab.lab.sweep_report import summary_lines, write_sweep_page

    budget = parse_budget(args.budget)
    if args.chunk is not None and args.chunk < 1:
        raise ConfigError(f"--chunk: got {args.chunk}; must be >= 1")
    plan = plan_scale(args.name, args.chunk, f"metalab scale {args.name} --budget {args.budget}")
    console = Console(soft_wrap=True)
    knob = plan.axes[0].field
    console.print(
        f"scale {plan.id}: {plan.experiment}, {len(plan.points)} rungs along {knob}, "
        f"budget {budget:.0f}s"
    )
    for p in plan.points:
        console.print(
            escape(
                f"  rung {p.index}: {knob}={p.values[knob]} preset={p.spec.preset} "
                f"seeds={p.spec.seeds} {' '.join(p.overrides)}"
            )
        )
    if args.dry_run:
        return cli.EXIT_OK
    store = cli.prepare_run(args, [p.spec for p in plan.points])  # the lab's checks first

    def on_point(o: PointOutcome) -> None:
        checks = o.checks or []
        passed = sum(c["passed"] for c in checks)
        console.print(
            f"rung {o.point.index}: {o.status} ({o.seconds:.0f}s); "
            f"{passed}/{len(checks)} checks pass"
        )

    try:
        out = run_scale(plan, store, budget, args.chunk, on_point, say=console.print)
    except KeyboardInterrupt:
        console.print(
            "interrupted; every finished seed is stored; run the same command again to resume"
        )
        return 130
    md, page, analysis = write_sweep_page(store, plan.id, args.out, html=True)
    console.print(f"{plan.experiment}: used {out.used:.0f}s of {budget:.0f}s; {out.note}")
    for line in summary_lines(analysis):
        console.print(escape(line))
    console.print(f"report: {md} and {page}")
    return cli.EXIT_ERROR if any(o.status == "failed" for o in out.points) else cli.EXIT_OK
