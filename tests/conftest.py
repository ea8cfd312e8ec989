import os

import pytest

# Same XLA setting as the CLI (see metalab/lab/cli.py): the multi-threaded Eigen pool on CPU
# can deadlock on programs with many vmapped while-loops.
if "xla_cpu_multi_thread_eigen" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
    ).strip()


@pytest.fixture(autouse=True)
def _one_ray_test_at_a_time(request, tmp_path_factory):
    """Tests marked ``ray`` take a file lock shared by every xdist worker, so at most one Ray
    cluster runs at a time (two at once on a 2-core machine starve each other). A lock rather
    than ``--dist loadgroup``: with pytest 9.2 and pytest-xdist 3.8 the group marker is not
    applied (measured: grouped tests still ran on two workers)."""
    if request.node.get_closest_marker("ray") is None:
        yield
        return
    import fcntl

    lock = tmp_path_factory.getbasetemp().parent / "metalab-ray-tests.lock"
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def run_readme_example(name: str) -> tuple[dict, str]:
    """Run the README's ``<!-- example: NAME -->`` Python block as written.

    Returns the namespace it leaves and what it printed; fails if the README lost the block.
    """
    import contextlib
    import io
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    m = re.search(rf"<!-- example: {name} -->\s*```python\n(.*?)```", readme, re.S)
    assert m, f"README lost its {name} example"
    ns: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(m.group(1), f"README.md:{name}", "exec"), ns)
    return ns, out.getvalue()


@pytest.fixture
def readme_example():
    """The README-example runner (:func:`run_readme_example`) as a fixture."""
    return run_readme_example
