"""What a hostile user does (issue 12's table): one clear line, the right exit code, nothing
written. Rows are numbered as in the issue. In-process where possible (fast)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from cli_helpers import cli, env, rows

SMOKE = ("--preset", "smoke", "--no-compile-cache")


def _quiet(err: str) -> None:
    assert "Traceback" not in err, err
    assert len([x for x in err.strip().splitlines() if "error" in x]) == 1, err


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("shift=nan", "shift: got nan; must be a finite number"),  # row 1
        ("shift=inf", "shift: got inf; must be a finite number"),
        ("widths=", "widths: got an empty list"),  # row 2
        ("steps=1e30", "steps: expected an integer"),  # row 3
        ("steps=10.0", "steps: expected an integer"),
        ("steps=99999999999999999999", "an int field must fit in 32 bits"),
        ("weights=no/such/file", "weights: got 'no/such/file': no file at"),  # row 4
    ],
)
def test_rows_1_to_4_bad_values_exit_2_and_write_nothing(tmp_path, capsys, override, needle):
    store, out = tmp_path / "s.sqlite", tmp_path / "r"
    code, _, err = cli(
        capsys, "run", "test-noisy", override, *SMOKE, "--store", str(store), "--out", str(out)
    )
    assert code == 2 and needle in err, err
    _quiet(err)
    assert not store.exists() and not out.exists()


def test_row_5_unusable_stores_are_one_line_exit_2(tmp_path, capsys):
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(os.urandom(4096))
    before = garbage.read_bytes()
    cases = [
        (tmp_path, "is a directory"),
        (garbage, "not a SQLite database"),
        ("/proc/metalab-store.sqlite", "pass a writable"),
        (tmp_path / "afile" / "s.sqlite", "is not a directory"),
    ]
    (tmp_path / "afile").write_text("x")
    for store, needle in cases:
        code, _, err = cli(
            capsys, "run", "test-noisy", *SMOKE, "--store", str(store), "--out", str(tmp_path / "r")
        )
        assert code == 2 and needle in err, (store, err)
        _quiet(err)
    assert garbage.read_bytes() == before
    assert not (tmp_path / "r").exists()


def test_row_5_disk_full_during_a_run_is_one_line(tmp_path, capsys, monkeypatch):
    from metalab.lab.store import Store

    def full(self, *a, **k):
        with self._transaction():
            raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Store, "put_results", full)
    code, _, err = cli(
        capsys,
        "run",
        "test-noisy",
        *SMOKE,
        "--store",
        str(tmp_path / "s.db"),
        "--out",
        str(tmp_path / "r"),
    )
    assert code == 4 and "disk holding the run store" in err and "is full" in err, err
    assert "Traceback" not in err


def test_row_6_a_foreign_sqlite_file_is_never_modified(tmp_path, capsys):
    theirs = tmp_path / "theirs.sqlite"
    con = sqlite3.connect(theirs)
    con.execute("CREATE TABLE results (id INTEGER, score REAL)")
    con.execute("INSERT INTO results VALUES (1, 2.5)")
    con.commit()
    con.close()
    before, mtime = theirs.read_bytes(), theirs.stat().st_mtime_ns
    for args in (
        ("run", "test-noisy", *SMOKE, "--out", str(tmp_path / "r")),
        ("list",),
        ("report", "--out", str(tmp_path / "r")),
        ("runs",),
    ):
        code, _, err = cli(capsys, *args, "--store", str(theirs))
        assert code == 2 and "not a metalab run store" in err, (args, err)
        _quiet(err)
    assert theirs.read_bytes() == before and theirs.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in tmp_path.iterdir()) == ["theirs.sqlite"]


def test_rows_7_8_report_out_a_file_and_user_files_kept(tmp_path, capsys):
    store, out = tmp_path / "s.sqlite", tmp_path / "out"
    code, _, err = cli(
        capsys, "run", "test-noisy", *SMOKE, "--store", str(store), "--out", str(out)
    )
    assert code == 0, err
    afile = tmp_path / "afile"
    afile.write_text("mine")
    code, _, err = cli(capsys, "report", "--store", str(store), "--out", str(afile))
    assert code == 2 and "is a file; pass a directory" in err
    _quiet(err)
    assert afile.read_text() == "mine"
    notes = out / "test-noisy" / "notes.txt"
    notes.write_text("my notes")
    stale = out / "test-noisy" / "curve_curve.png"
    assert stale.exists()
    # Read-only command: the store file is untouched.
    before, mtime = store.read_bytes(), store.stat().st_mtime_ns
    code, _, err = cli(capsys, "report", "--store", str(store), "--out", str(out))
    assert code == 0, err
    assert notes.read_text() == "my notes" and stale.exists()
    code, _, _ = cli(capsys, "list", "--store", str(store))
    assert code == 0
    assert store.read_bytes() == before and store.stat().st_mtime_ns == mtime


def test_row_11_corrupt_row_is_named_left_out_and_recomputed(tmp_path, capsys):
    store = tmp_path / "s.sqlite"
    args = ("run", "test-noisy", *SMOKE, "--store", str(store), "--out", str(tmp_path / "r"))
    assert cli(capsys, *args)[0] == 0
    con = sqlite3.connect(store)
    con.execute("UPDATE results SET metrics=? WHERE seed=2", (b"PK\x03\x04garbage",))
    con.commit()
    con.close()
    code, out, err = cli(capsys, "runs", "check", "--store", str(store))
    assert code == 1 and "test-noisy seed 2" in out and "unreadable" in out, out
    code, out, err = cli(capsys, "report", "--store", str(store), "--out", str(tmp_path / "r"))
    page = (tmp_path / "r" / "test-noisy.md").read_text()
    assert "test-noisy seed 2" in page and "Incomplete: 3 of 4 seeds" in page
    code, out, err = cli(capsys, *args)
    assert code == 0 and "computed 1, reused 3" in out, out + err
    assert "corrupt stored row, deleted and recomputed: test-noisy seed 2" in err
    assert cli(capsys, "runs", "check", "--store", str(store))[0] == 0


def test_row_14_huge_seed_counts_need_yes(tmp_path, capsys):
    code, _, err = cli(
        capsys,
        "run",
        "test-noisy",
        *SMOKE,
        "--seeds",
        "100000",
        "--store",
        str(tmp_path / "s.db"),
        "--out",
        str(tmp_path / "r"),
    )
    assert code == 2 and "--seeds 100000 is more than 1000" in err and "--yes" in err, err
    assert not (tmp_path / "s.db").exists()


def test_help_documents_exit_codes(capsys):
    from metalab.lab.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for code in ("0 ", "1 ", "2 ", "3 ", "4 ", "130"):
        assert f"  {code}" in text, text


# The CLI started as a terminal would start it: SIGINT handled and unblocked in the child even
# if the test process (a pytest-xdist worker, after earlier tests) passes on an ignored or
# blocked SIGINT. In two full runs on two xdist workers the child finished all 8 seeds and exited
# 0 although SIGINT was sent ~10 s into a 24 s run. Likely cause (seen with `metalab run`
# itself): a process started in the background by a non-interactive shell inherits SIGINT
# ignored, and Python then installs no KeyboardInterrupt handler.
_LAUNCH = (
    "import runpy, signal, sys; "
    "signal.signal(signal.SIGINT, signal.default_int_handler); "
    "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT}); "
    "runpy.run_module('metalab.lab.cli', run_name='__main__', alter_sys=True)"
)


def _slow_cmd(store, out, *extra):
    return [
        sys.executable,
        "-c",
        _LAUNCH,
        "run",
        "test-slow",
        "--preset",
        "smoke",
        "sleep=3.0",  # 8 seeds x 3 s: the interrupt lands mid-run even on a loaded machine
        "--store",
        str(store),
        "--out",
        str(out),
        *extra,
    ]


def _wait_rows(store, n, proc, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if store.exists() and len(rows(store, "test-slow")) >= n:
            return
        time.sleep(0.05)
    raise AssertionError("seeds were not stored in time")


def test_rows_9_10_13_per_seed_storage_log_lines_and_ctrl_c(tmp_path):
    """Non-vmapped seeds of one 8-seed chunk are stored one by one, the piped log shows each,
    and Ctrl-C ends in one line, exit 130, the invocation marked interrupted."""
    store = tmp_path / "s.sqlite"
    log = tmp_path / "stderr.txt"
    with open(log, "w") as fh:
        t0 = time.time()
        proc = subprocess.Popen(_slow_cmd(store, tmp_path / "r"), env=env(), stdout=fh, stderr=fh)
        _wait_rows(store, 2, proc)
        deadline = time.time() + 30
        while "seeds: 1/8" not in log.read_text() and time.time() < deadline:
            time.sleep(0.1)
        text = log.read_text()
        assert "test-slow: seeds: 1/8 (elapsed" in text and "ETA" in text, text  # row 13
        sent = time.time() - t0
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    text = log.read_text()
    # (once seen under heavy load with 2 s seeds: exit 0 after all 8 seeds; the send time is
    # printed to tell a late interrupt from a lost one)
    assert proc.returncode == 130, f"SIGINT sent {sent:.1f} s after start\n{text}"
    assert "Traceback" not in text, text
    n = len(rows(store, "test-slow"))
    assert 2 <= n < 8
    assert f"interrupted; {n} of 8 seeds of test-slow stored ({n} this run); run the same" in text
    con = sqlite3.connect(store)
    status = con.execute("SELECT status FROM invocations ORDER BY id DESC").fetchone()[0]
    leases = con.execute("SELECT COUNT(*) FROM leases").fetchone()[0]
    con.close()
    assert status == "interrupted" and leases == 0
