import os

# Same XLA setting as the CLI (see metalab/lab/cli.py): the multi-threaded Eigen pool on CPU
# can deadlock on programs with many vmapped while-loops.
if "xla_cpu_multi_thread_eigen" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
    ).strip()
