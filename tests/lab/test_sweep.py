"""``metalab sweep``: validation before anything runs, storage, resume after kill -9, reports,
and the library view (``list_sweeps``, ``sweep_frame``, ``checks_frame``)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sweep_fixtures

import metalab.lab
from metalab.experiments import registry
from metalab.lab import cli, sweep
from metalab.lab.sweep_report import analyse

HERE = Path(__file__).parent
NAME = "test-sweep-effect"


@pytest.fixture(autouse=True)
def _fixtures():
    for e in sweep_fixtures.EXPERIMENTS:
        registry.register(e)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["METALAB_PLUGINS"] = "sweep_fixtures"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH", "")]))
    env.setdefault("JAX_PLATFORMS", "cpu")
    return env


BIG = [
    "effect=" + ",".join(str(i) for i in range(41)),
    "noise=" + ",".join(str(i) for i in range(25)),
]  # 41 x 25 = 1025 points


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["effect="], "effect: empty list of values"),
        (["effect=1,,2"], "effect: empty item"),
        (["effect=-1,1"], "effect: got -1"),
        (["effect=1,200"], "effect: got 200"),
        (["effect=1,abc"], "effect: expected a float"),
        (["bogus=1,2"], "unknown config field 'bogus'"),
        (["effect=1,2", "effect=3"], "effect: swept twice"),
        (["effect=1,1.0"], "effect: value '1.0' is listed twice"),
        (["label=x,z"], "label: got 'z'; allowed: x, y"),
        (["widths=4;0"], "widths: got 0"),
        ([], "no sweep axes"),
        (BIG, "the grid has 1025 points (41 x 25), more than the limit of 1000"),
        (["effect=1,2,3", "--max-points", "2"], "more than the limit of 2"),
        (["effect=1,2", "--seeds", "0"], "--seeds: got 0"),
        (["effect=1,2", "--preset", "huge"], "--preset: got 'huge'"),
        (["seeds=2,0"], "seeds: got 0; must be >= 1"),
        (["seeds=2,4", "--seeds", "3"], "either as --seeds or as a seeds= axis"),
    ],
)
def test_bad_sweeps_exit_2_with_one_line_and_run_nothing(tmp_path, capsys, argv, needle):
    store, out = tmp_path / "s.sqlite", tmp_path / "r"
    code = cli.main(["sweep", NAME, *argv, "--store", str(store), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert needle in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not store.exists() and not out.exists()


def test_unknown_experiment_and_big_grid_allowed_with_max_points(tmp_path, capsys):
    assert cli.main(["sweep", "no-such", "x=1,2", "--store", str(tmp_path / "s")]) == 2
    assert "unknown experiment 'no-such'" in capsys.readouterr().err
    plan = sweep.plan_sweep(NAME, BIG, preset="smoke", max_points=2000)
    assert len(plan.points) == 1025 and plan.swept == ("effect", "noise")


def test_plan_parses_tuple_axes_and_fixed_values():
    plan = sweep.plan_sweep(NAME, ["widths=4,8;16", "noise=2", "effect=0,1"], preset="smoke")
    assert [a.field for a in plan.axes] == ["widths", "noise", "effect"]
    assert plan.swept == ("widths", "effect")  # one value: a fixed override
    assert [p.values["widths"] for p in plan.points] == [[4, 8], [4, 8], [16], [16]]
    assert {p.spec.config.noise for p in plan.points} == {2.0}
    again = sweep.plan_sweep(NAME, ["widths=4,8;16", "noise=2.0", "effect=0.0,1"], preset="smoke")
    assert again.id == plan.id  # the same grid, spelled differently: the same sweep


def _results(store: Path) -> dict[tuple[str, int], float]:
    con = sqlite3.connect(store)
    try:
        rows = con.execute(
            "SELECT config_hash, seed, finished_at FROM results WHERE experiment=?", (NAME,)
        ).fetchall()
    finally:
        con.close()
    return {(h, s): t for h, s, t in rows}


def test_sweep_stores_judges_reports_and_resumes(tmp_path, capsys):
    store, out = tmp_path / "s.sqlite", tmp_path / "r"
    argv = ["sweep", NAME, "effect=0,0.5,3", "--preset", "smoke", "--store", str(store)]
    assert cli.main([*argv, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.count("computed 6, reused 0") == 3
    [s] = sweep.list_sweeps(store)
    assert (s.kind, s.experiment, s.points, s.done, s.status) == ("sweep", NAME, 3, 3, "complete")
    df = sweep.sweep_frame(store)
    assert len(df) == 3 * 6
    assert {"effect", "seed", "score/a", "score/b", "config_hash", "code_version"} <= set(df)
    via_load = metalab.lab.load(store, NAME, sweep="all")  # the notebook entry point
    assert len(via_load) == 3 * 6 and sorted(set(via_load["effect"])) == [0.0, 0.5, 3.0]
    checks = sweep.checks_frame(store, NAME)
    assert list(checks["effect"]) == [0.0, 0.5, 3.0]
    assert list(checks["passed"]) == [False, False, True]
    assert checks["ci_low"].notna().all() and checks["mde"].notna().all()
    a = analyse(store, s.id)
    [curve] = a.curves
    assert curve.onset.value == 3.0 and curve.trend.slope > 0
    assert curve.trend.weighted
    assert (out / "sweeps" / f"{NAME}-sweep-{s.id}.md").exists()
    html = (out / "sweeps" / f"{NAME}-sweep-{s.id}.html").read_text()
    assert "data:image/png;base64," in html and "a beats b" in html
    assert cli.main(["report", "--html", "--store", str(store), "--out", str(out)]) == 0
    assert "sweeps/index.html" in (out / "index.html").read_text()
    assert (out / "sweeps" / "index.html").exists()
    before = _results(store)
    assert cli.main([*argv, "--out", str(out)]) == 0
    assert capsys.readouterr().out.count("computed 0, reused 6") == 3
    assert _results(store) == before


def _done_points(store: Path) -> set[int]:
    if not store.exists():
        return set()
    try:
        con = sqlite3.connect(store, timeout=5)
        try:
            rows = con.execute("SELECT idx FROM sweep_points WHERE status='done'").fetchall()
        finally:
            con.close()
    except sqlite3.OperationalError:  # the tables are not created yet
        return set()
    return {r[0] for r in rows}


@pytest.mark.slow
def test_kill_9_mid_sweep_then_resume_recomputes_no_finished_point(tmp_path):
    store, out = tmp_path / "s.sqlite", tmp_path / "r"
    cmd = [sys.executable, "-m", "metalab.lab.cli", "sweep", NAME, "effect=0,1,2,3", "sleep=0.3"]
    cmd += ["--preset", "smoke", "--chunk", "1", "--store", str(store), "--out", str(out)]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    try:
        while len(_done_points(store)) < 2 and proc.poll() is None:
            assert time.monotonic() < deadline, "the sweep made no progress"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = _done_points(store)
    assert len(done) >= 2
    if len(done) == 4:
        pytest.skip("the sweep finished before the kill (machine too fast for this test)")
    before = _results(store)
    rerun = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    for i in done:  # finished points: every seed reused, nothing recomputed
        assert f"point {i} " in rerun.stdout
        line = next(ln for ln in rerun.stdout.splitlines() if ln.startswith(f"point {i} "))
        assert "computed 0, reused 6" in line, rerun.stdout
    after = _results(store)
    assert all(after[k] == t for k, t in before.items())  # stored seeds untouched
    assert len(after) == 4 * 6
    assert _done_points(store) == {0, 1, 2, 3}


@pytest.mark.ray
@pytest.mark.slow
def test_ray_sweep_runs_every_point(tmp_path):
    pytest.importorskip("ray")
    store = tmp_path / "ray.sqlite"
    cmd = [sys.executable, "-m", "metalab.lab.cli", "sweep", NAME, "effect=0,3", "--preset"]
    cmd += ["smoke", "--executor", "ray", "--store", str(store), "--out", str(tmp_path / "r")]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [s] = sweep.list_sweeps(store)
    assert s.done == 2
    checks = sweep.checks_frame(store, s.id)
    assert list(checks["passed"]) == [False, True]  # same numbers as the local executor


def test_seeds_axis_shares_the_first_seeds(tmp_path, capsys):
    store = tmp_path / "s.sqlite"
    argv = ["sweep", NAME, "seeds=3,6", "effect=1", "--preset", "smoke", "--store", str(store)]
    assert cli.main([*argv, "--out", str(tmp_path / "r")]) == 0
    text = capsys.readouterr().out
    assert "computed 3, reused 0" in text and "computed 3, reused 3" in text
    checks = sweep.checks_frame(store, NAME)
    assert list(checks["seeds"]) == [3, 6] and list(checks["n"]) == [3, 6]


def test_sweeps_table_lists_sweeps(tmp_path, capsys):
    store = tmp_path / "s.sqlite"
    assert (
        cli.main(
            [
                "sweep",
                NAME,
                "effect=0,1",
                "--preset",
                "smoke",
                "--store",
                str(store),
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 0
    )
    table = sweep.sweeps_table(store)
    assert table is not None and table.row_count == 1
    assert sweep.sweeps_table(store, experiments=["other"]) is None
    capsys.readouterr()
    assert cli.main(["runs", "--store", str(store)]) == 0  # metalab runs lists it (read-only)
    assert sweep.list_sweeps(store)[0].id in capsys.readouterr().out
    out = tmp_path / "rebuilt"
    assert cli.main(["report", "--html", "--store", str(store), "--out", str(out)]) == 0
    index = (out / "sweeps" / "index.html").read_text()
    assert "<a href='test-sweep-effect-sweep-" in index


def test_a_failing_point_does_not_stop_the_others(tmp_path, capsys):
    store = tmp_path / "s.sqlite"
    argv = ["sweep", NAME, "label=y,x", "--preset", "smoke", "--store", str(store)]
    assert cli.main([*argv, "--out", str(tmp_path / "r")]) == 1
    assert "fixture: label y fails" in capsys.readouterr().out
    [s] = sweep.list_sweeps(store)
    assert (s.done, s.failed) == (1, 1)
    points = sweep.sweep_points(store, s.id)
    assert [p["status"] for p in points] == ["failed", "done"]


def test_out_is_a_file_exits_2_before_any_point(tmp_path, capsys):
    store, out = tmp_path / "s.sqlite", tmp_path / "afile"
    out.write_text("x")
    code = cli.main(["sweep", NAME, "effect=0,1", "--store", str(store), "--out", str(out)])
    assert code == 2 and "--out" in capsys.readouterr().err
    assert sweep.list_sweeps(store) == []
