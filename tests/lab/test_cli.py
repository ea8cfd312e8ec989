"""End-to-end tests of the ``metalab`` CLI: validation, store, resume, NaN guard, determinism."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import pytest
from cli_helpers import env, group, metalab, rows


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "no-such-experiment"], "unknown experiment 'no-such-experiment'"),
        (["run", "test-noisy", "bogus=1"], "unknown config field 'bogus'"),
        (["run", "test-noisy", "steps=abc"], "steps: expected an int"),
        (["run", "test-noisy", "steps=0"], "steps: got 0; must be >= 1"),
        (["run", "test-noisy", "mode=weird"], "mode: got 'weird'; allowed: plain, fancy"),
        (["run", "test-noisy", "widths=4,0"], "widths: got 0; must be >= 1"),
        (["run", "test-noisy", "--preset", "huge"], "--preset: got 'huge'; allowed: smoke"),
        (["run", "test-noisy", "--executor", "slurm"], "--executor: got 'slurm'"),
        (["run", "test-noisy", "--seeds", "0"], "--seeds: got 0"),
        (["run", "test-noisy", "steps"], "not of the form field=value"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tmp_path, args, needle):
    store = tmp_path / "s.sqlite"
    proc = metalab(*args, "--store", str(store), "--out", str(tmp_path / "r"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert needle in proc.stderr, proc.stderr
    assert not store.exists()
    assert not (tmp_path / "r").exists()


def test_bad_input_leaves_existing_store_unchanged(tmp_path):
    store = tmp_path / "s.sqlite"
    metalab(
        "run",
        "test-noisy",
        "--preset",
        "smoke",
        "--store",
        str(store),
        "--out",
        str(tmp_path / "r"),
        check=True,
    )
    before = store.read_bytes()
    proc = metalab("run", "test-noisy", "steps=-3", "--store", str(store))
    assert proc.returncode == 2
    assert store.read_bytes() == before


def test_run_stores_reports_and_resumes(tmp_path):
    store, out = tmp_path / "s.sqlite", tmp_path / "rep"
    p1 = metalab(
        "run",
        "test-noisy",
        "--preset",
        "smoke",
        "--store",
        str(store),
        "--out",
        str(out),
        check=True,
    )
    assert "computed 4, reused 0" in p1.stdout
    assert "verdict: reproduced" in p1.stdout
    first = rows(store, "test-noisy")
    assert [r[0] for r in first] == [0, 1, 2, 3]
    p2 = metalab(
        "run",
        "test-noisy",
        "--preset",
        "smoke",
        "--store",
        str(store),
        "--out",
        str(out),
        check=True,
    )
    assert "computed 0, reused 4" in p2.stdout
    assert rows(store, "test-noisy") == first  # nothing recomputed or rewritten
    page = (out / "test-noisy.md").read_text()
    assert "Verdict: reproduced" in page and "| b above a |" in page
    assert (out / "test-noisy" / "curve_curve.png").exists()
    assert "[test-noisy](test-noisy.md)" in (out / "index.md").read_text()
    # More seeds later: only the new ones are computed.
    p3 = metalab(
        "run",
        "test-noisy",
        "--preset",
        "smoke",
        "--seeds",
        "6",
        "--store",
        str(store),
        "--out",
        str(out),
        check=True,
    )
    assert "computed 2, reused 4" in p3.stdout
    # A changed override is a different config: computed afresh.
    p4 = metalab(
        "run",
        "test-noisy",
        "--preset",
        "smoke",
        "shift=-1",
        "--store",
        str(store),
        "--out",
        str(out),
    )
    assert "computed 4, reused 0" in p4.stdout
    assert "verdict: not reproduced" in p4.stdout


def test_same_seed_same_numbers(tmp_path):
    import numpy as np

    from metalab.lab.store import Store

    for name in ("a", "b"):
        metalab(
            "run",
            "test-noisy",
            "--preset",
            "smoke",
            "--store",
            str(tmp_path / f"{name}.db"),
            "--out",
            str(tmp_path / name),
            check=True,
        )
    ra = list(
        Store(tmp_path / "a.db").get_results("test-noisy", *group(tmp_path / "a.db")).values()
    )
    rb = list(
        Store(tmp_path / "b.db").get_results("test-noisy", *group(tmp_path / "b.db")).values()
    )
    assert len(ra) == len(rb) == 4
    for ma, mb in zip(ra, rb, strict=True):
        assert ma.keys() == mb.keys()
        for k in ma:
            np.testing.assert_array_equal(ma[k], mb[k])


def test_nan_is_reported_with_seed_and_step_and_not_stored(tmp_path):
    store = tmp_path / "s.sqlite"
    proc = metalab(
        "run",
        "test-noisy",
        "--preset",
        "smoke",
        "nan_seed=2",
        "nan_step=7",
        "--store",
        str(store),
        "--out",
        str(tmp_path / "r"),
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "seed 2: non-finite value in metric 'curve/b' at step 7" in proc.stdout
    assert [r[0] for r in rows(store, "test-noisy")] == [0, 1, 3]


def test_kill_minus_9_then_rerun_gives_every_seed_once(tmp_path):
    store = tmp_path / "s.sqlite"
    cmd = [
        sys.executable,
        "-m",
        "metalab.lab.cli",
        "run",
        "test-slow",
        "--preset",
        "smoke",
        "sleep=0.4",
        "--store",
        str(store),
        "--out",
        str(tmp_path / "r"),
    ]
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        if store.exists() and len(rows(store, "test-slow")) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = rows(store, "test-slow")
    assert 2 <= len(before) < 8, "the kill should land mid-run"
    done = metalab(*cmd[3:], check=True)
    assert f"computed {8 - len(before)}, reused {len(before)}" in done.stdout
    after = rows(store, "test-slow")
    assert [r[0] for r in after] == list(range(8))
    assert after[: len(before)] == before  # finished seeds were not recomputed


def test_concurrent_runs_split_the_seeds(tmp_path):
    """Two processes on one store lease seeds: together they compute each seed once."""
    store = tmp_path / "s.sqlite"
    cmd = [
        sys.executable,
        "-m",
        "metalab.lab.cli",
        "run",
        "test-slow",
        "--preset",
        "smoke",
        "sleep=1.0",
        "--store",
        str(store),
        "--out",
        str(tmp_path / "r"),
    ]
    procs = [
        subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    computed = 0
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        computed += int(re.search(r"computed (\d+)", out.decode()).group(1))
        assert "verdict: reproduced" in out.decode()
    assert computed == 8
    assert [r[0] for r in rows(store, "test-slow")] == list(range(8))


def test_list_and_show(tmp_path):
    proc = metalab("list", "--store", str(tmp_path / "none.sqlite"), check=True)
    assert "optimistic-mg" in proc.stdout and "test-noisy" in proc.stdout
    show = metalab("show", "test-noisy", "--preset", "smoke", check=True)
    assert "curve length" in show.stdout and "allowed range" in show.stdout


def test_report_without_store_is_a_clear_error(tmp_path):
    proc = metalab("report", "--store", str(tmp_path / "missing.sqlite"))
    assert proc.returncode == 2 and "no run store" in proc.stderr
