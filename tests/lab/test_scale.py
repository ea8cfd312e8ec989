"""``metalab scale``: ladder and budget validation, the climb within a budget, resume."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import sweep_fixtures

from metalab.experiments import registry
from metalab.lab import cli, scale, sweep
from metalab.lab.config import ConfigError
from metalab.lab.store import Store
from metalab.lab.sweep_report import analyse

HERE = Path(__file__).parent


@pytest.fixture(autouse=True)
def _fixtures(monkeypatch):
    for e in sweep_fixtures.EXPERIMENTS:
        registry.register(e)
    # the rungs run as `metalab run` child processes: they must find the fixtures too
    monkeypatch.setenv("METALAB_PLUGINS", "sweep_fixtures")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    )
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("90s", 90), ("1h30m", 5400), ("2.5m", 150), ("600", 600), ("1h", 3600)],
)
def test_parse_budget(text, seconds):
    assert scale.parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "0", "-5m", "5x", "m30", "10m junk"])
def test_bad_budget(text):
    with pytest.raises(ConfigError, match="--budget"):
        scale.parse_budget(text)


def test_plan_reads_the_ladder():
    plan = scale.plan_scale("test-sweep-effect")
    assert plan.kind == "scale" and plan.axes[0].field == "effect"
    assert [p.values["effect"] for p in plan.points] == [0.0, 0.3, 3.0]
    assert [p.spec.seeds for p in plan.points] == [6, 8, 8]
    assert [p.spec.preset for p in plan.points] == ["smoke", "smoke", "quick"]
    assert scale.plan_scale("test-sweep-effect").id == plan.id


def _with_ladder(name: str, ladder) -> str:
    exp = dataclasses.replace(registry.get("test-sweep-effect"), name=name, ladder=ladder)
    registry.register(exp)
    return name


@pytest.mark.parametrize(
    ("ladder", "needle"),
    [
        ((), "declares no scale ladder"),
        (({"effect": 1.0}, {"effect": -1.0}), "ladder rung 1: effect: got -1"),
        (({"bogus": 1},), "ladder rung 0: unknown config field 'bogus'"),
        (({"preset": "huge"},), "ladder rung 0: preset 'huge'"),
        (({"effect": 1.0, "seeds": 0},), "ladder rung 0: --seeds: got 0"),
    ],
)
def test_bad_ladders_exit_2_and_run_nothing(tmp_path, capsys, ladder, needle):
    name = _with_ladder(f"test-sweep-bad{abs(hash(str(ladder))) % 10**6}", ladder)
    store = tmp_path / "s.sqlite"
    code = cli.main(["scale", name, "--budget", "1m", "--store", str(store)])
    err = capsys.readouterr().err
    assert code == 2 and needle in err, err
    assert len(err.strip().splitlines()) == 1
    assert not store.exists()


def test_bad_budget_exits_2(tmp_path, capsys):
    assert cli.main(["scale", "test-sweep-effect", "--budget", "soon"]) == 2
    assert "--budget: got 'soon'" in capsys.readouterr().err


def test_knob_falls_back_to_the_rung_number():
    name = _with_ladder("test-sweep-rungs", ({"effect": 1.0}, {"effect": 1.0, "seeds": 8}))
    plan = scale.plan_scale(name)
    assert plan.axes[0].field == "rung" and [p.values["rung"] for p in plan.points] == [0, 1]


@pytest.mark.slow
def test_scale_climbs_the_whole_ladder_and_reports_the_trend(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    plan = scale.plan_scale("test-sweep-effect")
    out = scale.run_scale(plan, store, budget=600, say=lambda s: None)
    assert [o.status for o in out.points] == ["done", "done", "done"]
    assert out.note == "every rung finished within the budget"
    [s] = sweep.list_sweeps(store)
    assert s.kind == "scale" and s.done == 3
    a = analyse(store, s.id)
    [curve] = a.curves
    assert list(curve.x) == [0.0, 0.3, 3.0]
    assert list(curve.passed) == [False, False, True]
    assert curve.onset.value == 3.0
    assert curve.trend.slope > 0 and curve.trend.weighted
    assert len(sweep.sweep_frame(store, s.id)) == 6 + 8 + 8


@pytest.mark.slow
def test_scale_stops_at_the_budget_and_resumes(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    plan = scale.plan_scale("test-sweep-slowladder", chunk=1)
    # Margins wide enough for a loaded machine: rung 0 (4 instant seeds) needs only a process
    # start; rung 1 sleeps 8 x 8 s, more than the whole budget, so it can never finish.
    budget = 45.0
    out = scale.run_scale(plan, store, budget=budget, chunk=1, say=lambda s: None)
    statuses = [o.status for o in out.points]
    assert statuses[0] == "done" and statuses[1] in ("partial", "skipped")
    assert statuses[2] == "skipped"
    assert out.used < budget + scale.GRACE_SECONDS + 10
    spec = plan.points[1].spec
    kept = store.finished_seeds(spec.exp.name, spec.config_hash, spec.code_version)
    assert len(kept) < 8
    if statuses[1] == "partial" and len(kept) >= 2:  # judged on the seeds that finished
        assert out.points[1].checks is not None
    [s] = sweep.list_sweeps(store)
    assert "budget 45s" in s.note


LISTED = (
    "tdu-deep-sea",
    "leap-fewshot",
    "reload-deep",
    "symla-generalisation",
    "atari-transfer",
    "les-bbob",
    "lga-bbob",
    "les-neuroevolution",
)


def test_every_declared_ladder_is_valid_and_the_listed_experiments_declare_one():
    reg = registry.load_all()
    for name in LISTED:
        if name in reg:  # an optional extra may be missing
            assert reg[name].ladder, f"{name} declares no scale ladder"
    for name, exp in reg.items():
        if exp.ladder and not name.startswith("test-"):  # fixtures (some invalid on purpose)
            plan = scale.plan_scale(name)  # every rung resolves (fields, ranges, presets)
            xs = [p.values[plan.axes[0].field] for p in plan.points]
            assert xs == sorted(xs) and len(set(xs)) == len(xs), name
