"""A real multi-process Ray run: a head and a worker node started with ``ray start`` (separate
processes on this machine, loopback), ``metalab run --executor ray --ray-address``, and the same
numbers as the local executor.

Every Ray process is started here in its own session (``--block`` keeps the daemons children of
the ``ray start`` process) and stopped here by process group and by PID (any process whose
command line names this test's private Ray temp dir), even when the test fails; never with a
broad ``ray stop``. Bounded in time: each step has a timeout.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray")

from cli_helpers import env, group, metalab  # noqa: E402

from metalab.lab.store import Store  # noqa: E402

RAY = str(Path(sys.executable).parent / "ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pids_using(marker: str) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd:
            pids.append(int(d.name))
    return pids


def _stop(procs: list[subprocess.Popen], marker: str) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, sig)
        for pid in _pids_using(marker):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.time() + 15
        while time.time() < deadline and (
            any(p.poll() is None for p in procs) or _pids_using(marker)
        ):
            time.sleep(0.2)


def _nodes(address: str, e: dict) -> int:
    code = (
        f"import ray; ray.init(address={address!r}, log_to_driver=False); "
        "print(sum(n['Alive'] for n in ray.nodes()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=e, capture_output=True, text=True, timeout=120
    )
    try:
        return int(out.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return 0


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_node_cluster_gives_the_local_numbers(tmp_path):
    temp = tempfile.mkdtemp(prefix="mlray", dir="/tmp")  # short: Ray's socket paths
    port = _free_port()
    address = f"127.0.0.1:{port}"
    e = env()
    e["RAY_USAGE_STATS_ENABLED"] = "0"
    e["RAY_AUTH_MODE"] = "disabled"  # a loopback-only test cluster: no token files in ~/.ray
    common = ["--num-cpus=1", "--node-ip-address=127.0.0.1", "--block", "--disable-usage-stats"]
    logs = [open(tmp_path / f"{n}.log", "w") for n in ("head", "worker")]  # noqa: SIM115
    procs: list[subprocess.Popen] = []
    try:
        procs.append(
            subprocess.Popen(
                [
                    RAY,
                    "start",
                    "--head",
                    f"--port={port}",
                    f"--temp-dir={temp}",
                    "--include-dashboard=false",
                    *common,
                ],
                env=e,
                stdout=logs[0],
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        deadline = time.time() + 180
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert procs[0].poll() is None, (tmp_path / "head.log").read_text()
            time.sleep(0.5)
        procs.append(
            subprocess.Popen(
                [RAY, "start", f"--address={address}", *common],
                env=e,
                stdout=logs[1],
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        deadline = time.time() + 180
        while _nodes(address, e) < 2:
            assert time.time() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
            assert procs[1].poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(1)
        local, remote = tmp_path / "local.db", tmp_path / "ray.db"
        common_run = (
            "run",
            "test-noisy",
            "--preset",
            "smoke",
            "--chunk",
            "1",
            "--no-compile-cache",
        )
        metalab(*common_run, "--store", str(local), "--out", str(tmp_path / "a"), check=True)
        proc = metalab(
            *common_run,
            "--executor",
            "ray",
            "--ray-address",
            address,
            "--store",
            str(remote),
            "--out",
            str(tmp_path / "b"),
            check=True,
            extra_env={"RAY_AUTH_MODE": "disabled"},
            timeout=600,
        )
        assert "computed 4, reused 0" in proc.stdout
        a = Store(local).get_results("test-noisy", *group(local))
        b = Store(remote).get_results("test-noisy", *group(remote))
        assert sorted(a) == sorted(b) == [0, 1, 2, 3]
        for seed in a:
            for key in a[seed]:
                np.testing.assert_array_equal(a[seed][key], b[seed][key])
    finally:
        _stop(procs, temp)
        for fh in logs:
            fh.close()
        shutil.rmtree(temp, ignore_errors=True)
    assert not _pids_using(temp), "Ray processes outlived the test"
