"""Run management (`metalab runs`), results for notebooks (`metalab.lab.load`), the HTML
report rendered by a real browser, the rules-changed flag and the compile cache."""

from __future__ import annotations

import html.parser
import os
import shutil
import sqlite3
import subprocess

import numpy as np
import pytest
from cli_helpers import cli, metalab

SMOKE = ("--preset", "smoke", "--no-compile-cache")


def _run(capsys, tmp_path, *extra):
    store = tmp_path / "s.sqlite"
    code, out, err = cli(
        capsys, "run", *extra, *SMOKE, "--store", str(store), "--out", str(tmp_path / "r")
    )
    assert code == 0, out + err
    return store


def test_runs_list_delete_prune(tmp_path, capsys):
    from metalab.lab.store import Store

    store = _run(capsys, tmp_path, "test-noisy")
    code, out, _ = cli(capsys, "runs", "--store", str(store))
    assert code == 0 and "test-noisy" in out and "4/4" in out and "reproduced" in out, out
    # A group of an older code version: prune removes it and keeps the current one.
    Store(store).put_results("test-noisy", "feedc0de", "0.0.1+old", [(0, {"x": 1.0}, 0.1)])
    code, out, _ = cli(capsys, "runs", "list", "--store", str(store))
    assert "0.0.1+old (old)" in out, out
    code, out, _ = cli(capsys, "runs", "prune", "--store", str(store))
    assert code == 0 and "pruned 1 stored seed" in out, out
    assert {r[3] for r in Store(store).result_rows()} != {"0.0.1+old"}
    assert len(Store(store).result_rows()) == 4
    code, out, _ = cli(capsys, "runs", "delete", "test-noisy", "--store", str(store))
    assert code == 0 and "deleted 4 stored seed(s)" in out
    assert Store(store).result_rows() == []


def test_an_invocation_whose_process_died_is_listed_as_died(tmp_path, capsys):
    # kill -9 gives the process no chance to mark its invocation: the store records host and
    # pid, and a "running" invocation whose process is gone reads as "died".
    from metalab.lab.store import Store

    store = _run(capsys, tmp_path, "test-noisy")
    s = Store(store)
    inv = s.start_invocation("test-noisy", "smoke", "feedc0de", {}, "0.0.1", 4, "local")
    assert s.invocations()[-1].status == "running"  # this process is alive
    gone = subprocess.Popen(["true"])
    gone.wait()
    with sqlite3.connect(store) as con:
        con.execute("UPDATE invocations SET pid=? WHERE id=?", (gone.pid, inv))
    assert s.invocations()[-1].status == "died"


def test_load_gives_a_row_per_seed(tmp_path, capsys):
    import metalab.lab
    from metalab.lab.store import Store

    store = _run(capsys, tmp_path, "test-noisy", "steps=7")
    before = store.stat().st_mtime_ns
    df = metalab.lab.load(store, "test-noisy")
    assert store.stat().st_mtime_ns == before
    assert list(df["seed"]) == [0, 1, 2, 3]
    assert {"final/a", "final/b", "config.steps", "code_version", "preset"} <= set(df.columns)
    assert (df["config.steps"] == 7).all() and (df["preset"] == "smoke").all()
    h, v = df["config_hash"][0], df["code_version"][0]
    got = Store(store).get_results("test-noisy", h, v)
    np.testing.assert_array_equal(df["final/b"], [float(got[s]["final/b"]) for s in range(4)])
    assert "curve/a" not in df.columns  # arrays stay in the store
    assert metalab.lab.load(store, "test-slow").empty


class _Text(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if os.environ.get("METALAB_NO_BROWSER"):
        pytest.skip("METALAB_NO_BROWSER is set")
    raise AssertionError("no chromium: apt-get install -y chromium (.ci/run does)")


def _browser(page, tmp_path, *args) -> subprocess.CompletedProcess:
    cmd = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'chrome'}",
        *args,
        page.as_uri(),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_html_report_renders_in_chromium(tmp_path, capsys):
    import matplotlib.image

    from metalab.lab.store import Store

    store = _run(capsys, tmp_path, "test-noisy")
    _run(capsys, tmp_path, "test-noisy", "shift=-1")  # latest: not reproduced
    _run(capsys, tmp_path, "test-slow", "sleep=0")
    # An earlier verdict of the same config judged by other rules: the page flags it.
    st = Store(store)
    inv = st.latest_invocations()["test-noisy"]
    old = dict(st.verdicts("test-noisy")[-1]["verdict"], rules_hash="0ldru1e5")
    st.put_verdict("test-noisy", inv.config_hash, "0.0.1+old", 4, old)
    out = tmp_path / "html"
    code, stdout, err = cli(capsys, "report", "--html", "--store", str(store), "--out", str(out))
    assert code == 0, err
    index, page = out / "index.html", out / "test-noisy.html"
    raw = page.read_text()
    assert "data:image/png;base64," in raw and "src='test-noisy/" not in raw  # self-contained
    verdicts = {"test-noisy": "not reproduced", "test-slow": "reproduced"}
    for target, must in (
        (index, [*verdicts, *verdicts.values()]),
        (
            page,
            [
                "not reproduced",
                "b above a",
                "superiority",
                "MDE",
                "p (Holm)",
                "Declared rules",
                "rules changed",
            ],
        ),
    ):
        shot = tmp_path / f"{target.stem}.png"
        proc = _browser(target, tmp_path, "--window-size=1280,1000", f"--screenshot={shot}")
        assert shot.exists(), proc.stderr[-2000:]
        img = matplotlib.image.imread(shot)[..., :3]
        assert img.std() > 0.05, "blank screenshot"
        assert (img.min(axis=-1) < 0.5).mean() > 0.005, "no dark pixels: nothing rendered"
        dom = _browser(target, tmp_path, "--dump-dom")
        parser = _Text()
        parser.feed(dom.stdout)
        text = " ".join(" ".join(parser.parts).split())
        for needle in must:
            assert needle in text, (target.name, needle, text[:3000])
    index_text = index.read_text()
    assert "test-noisy.html" in index_text and "test-slow.html" in index_text
    assert index_text.count("not reproduced") == 1


def test_compile_cache_is_filled_and_can_be_turned_off(tmp_path, capsys):
    metalab(
        "run",
        "test-noisy",
        "--preset",
        "smoke",
        "--store",
        str(tmp_path / "a" / "s.sqlite"),
        "--out",
        str(tmp_path / "ra"),
        check=True,
        extra_env={"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"},
    )
    cache = tmp_path / "a" / "jax-cache"
    assert cache.is_dir() and any(cache.iterdir())
    con = sqlite3.connect(tmp_path / "a" / "s.sqlite")
    (secs,) = con.execute("SELECT compile_seconds FROM invocations").fetchone()
    con.close()
    assert secs > 0
    # In this process (which must not switch the cache on for other tests): off means no dir.
    _run(capsys, tmp_path / "b", "test-noisy")
    assert not (tmp_path / "b" / "jax-cache").exists()


def test_a_store_written_before_the_application_id_is_adopted(tmp_path):
    from metalab.lab.store import APPLICATION_ID, Store, encode_metrics

    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    con.executescript(
        """
        CREATE TABLE results (experiment TEXT, config_hash TEXT, seed INTEGER,
            code_version TEXT, metrics BLOB, wall_seconds REAL, finished_at REAL,
            PRIMARY KEY (experiment, config_hash, seed, code_version));
        CREATE TABLE invocations (id INTEGER PRIMARY KEY AUTOINCREMENT, experiment TEXT,
            preset TEXT, config_hash TEXT, config_json TEXT, code_version TEXT, seeds INTEGER,
            executor TEXT, started_at REAL, finished_at REAL, compile_seconds REAL,
            run_seconds REAL);
        CREATE TABLE verdicts (experiment TEXT, config_hash TEXT, code_version TEXT,
            seeds INTEGER, verdict_json TEXT, computed_at REAL,
            PRIMARY KEY (experiment, config_hash, code_version, seeds));
        """
    )
    con.execute(
        "INSERT INTO results VALUES ('e', 'h', 0, 'v', ?, 1.0, 2.0)",
        (encode_metrics({"x": 1.5}),),
    )
    con.execute(
        "INSERT INTO invocations (experiment, preset, config_hash, config_json, code_version, "
        "seeds, executor, started_at, finished_at) VALUES ('e', 'quick', 'h', '{}', 'v', 1, "
        "'local', 1.0, 2.0)"
    )
    con.commit()
    con.close()
    ro = Store(path, readonly=True)
    assert ro.latest_invocations()["e"].status == "finished"
    st = Store(path)
    st.prepare()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    con.close()
    assert float(st.get_results("e", "h", "v")[0]["x"]) == 1.5
    assert st.claim("e", "h", "v", [0, 1], "me", 5, 60.0) == [1]


def test_processes_creating_one_store_at_once_lease_each_seed_once(tmp_path):
    import multiprocessing

    from cli_helpers import prepare_and_claim

    with multiprocessing.get_context("spawn").Pool(4) as pool:
        got = pool.map(prepare_and_claim, [str(tmp_path / "s.sqlite")] * 4)
    assert sorted(s for g in got for s in g) == list(range(8))
