"""The Ray executor gives the same numbers as the local one for the same seeds."""

from __future__ import annotations

import numpy as np
import pytest

from metalab.lab.store import Store

pytest.importorskip("ray")

from cli_helpers import group, metalab  # noqa: E402


@pytest.mark.ray
def test_ray_and_local_agree(tmp_path):
    local, remote = tmp_path / "local.db", tmp_path / "ray.db"
    metalab(
        "run",
        "test-noisy",
        "--preset",
        "smoke",
        "--chunk",
        "2",
        "--store",
        str(local),
        "--out",
        str(tmp_path / "a"),
        check=True,
    )
    proc = metalab(
        "run",
        "test-noisy",
        "--preset",
        "smoke",
        "--chunk",
        "2",
        "--executor",
        "ray",
        "--store",
        str(remote),
        "--out",
        str(tmp_path / "b"),
        check=True,
        timeout=600,
    )
    assert "computed 4, reused 0" in proc.stdout
    a = Store(local).get_results("test-noisy", *group(local))
    b = Store(remote).get_results("test-noisy", *group(remote))
    assert sorted(a) == sorted(b) == [0, 1, 2, 3]
    for seed in a:
        for key in a[seed]:
            np.testing.assert_array_equal(a[seed][key], b[seed][key])
