"""One MAML meta-training step: metalab vs a hand-written JAX step vs higher vs torchopt
(PyTorch CPU), and peak memory against the number of inner steps for MAML, Leap and WarpGrad.

Setting (Finn et al. 2017, BENCHMARKS.md): sinusoid regression, amplitude U[0.1, 5], phase
U[0, pi], x U[-5, 5]; 10-shot support and 10-shot query; MLP 1-40-40-1 ReLU; 5 second-order
inner SGD steps with lr 0.01; meta-batch 25; outer Adam 1e-3. Task batches are generated
before the timed region (the same numbers for every contender); compilation is timed apart.
Contenders run alternately in blocks (A B C A B C ...) in one process; the script prints the
median meta-steps/s of each and the per-block ratios metalab / peer. The goal: metalab's
``metalearn.maml(...).update`` at >= 0.9x the hand-written jitted JAX step (vmap over tasks,
``lax.scan`` inner loop, optax Adam), i.e. its abstractions cost nothing. The PyTorch peers
run only when torch, higher and torchopt are installed (``pip install -e ".[bench]"``).

Memory: XLA's compiled-buffer analysis (``temp_size_in_bytes`` of the jitted step) for K
inner steps. MAML stores the trajectory for backprop (grows with K); Leap accumulates its
meta-gradient in the scan carry and WarpGrad keeps S fixed snapshots (flat in K).

Run: ``python benchmarks/maml_step.py [--blocks 5] [--steps-per-block 20] [--skip-memory]``.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metalab import metalearn
from metalab.metalearn.nets import batch_loss, mlp_apply, mlp_init, mse, warped_apply, warped_init
from metalab.metalearn.tasks import sample_tasks, sinusoid_task

META_BATCH, SHOTS, INNER_LR, INNER_STEPS, META_LR = 25, 10, 0.01, 5, 1e-3


def loss_fn(params, batch):
    x, y = batch
    return batch_loss(mse, mlp_apply(params, x), y) / 1.0


def make_tasks(n_steps: int, seed: int = 0):
    """(n_steps, META_BATCH, SHOTS, 1) support/query arrays, numpy float32."""
    keys = jax.random.split(jax.random.PRNGKey(seed), n_steps)
    t = jax.vmap(lambda k: sample_tasks(lambda kk: sinusoid_task(kk, SHOTS, SHOTS), k, META_BATCH))(
        keys
    )
    return jax.tree.map(np.asarray, t)


# ------------------------------------------------------------------------------ metalab


def _timed_contender(step, state, tasks):
    """Compile ``step(state, task_batch) -> (state, aux)`` apart; return a runner of k steps."""
    dev_tasks = jax.tree.map(jnp.asarray, tasks)
    n = tasks.support[0].shape[0]
    per_step = [jax.tree.map(lambda a, i=i: a[i], dev_tasks) for i in range(n)]
    t0 = time.perf_counter()
    compiled = jax.jit(step).lower(state, per_step[0]).compile()
    compile_s = time.perf_counter() - t0
    holder = {"state": state, "i": 0}

    def run(k):
        s = holder["state"]
        for _ in range(k):
            s, _ = compiled(s, per_step[holder["i"] % n])
            holder["i"] += 1
        jax.block_until_ready(s)
        holder["state"] = s

    return run, compile_s


def metalab_contender(tasks):
    # mse here is a per-example sum over the one output, the batch mean: same as torch
    learner = metalearn.maml(
        loss_fn, inner_lr=INNER_LR, num_steps=INNER_STEPS, outer=optax.adam(META_LR)
    )
    key = jax.random.PRNGKey(0)
    state = learner.init(mlp_init(key, (1, 40, 40, 1)), key)
    return _timed_contender(lambda s, t: learner.update(s, key, t), state, tasks)


def handwritten_contender(tasks):
    """The reference: MAML written directly in JAX (no metalab code but the MLP and loss)."""
    opt = optax.adam(META_LR)
    params = mlp_init(jax.random.PRNGKey(0), (1, 40, 40, 1))

    def task_loss(p, task):
        def inner(q, _):
            g = jax.grad(loss_fn)(q, task.support)
            return jax.tree.map(lambda a, b: a - INNER_LR * b, q, g), None

        q, _ = jax.lax.scan(inner, p, None, length=INNER_STEPS)
        return loss_fn(q, task.query)

    def step(state, task_batch):
        p, os = state
        loss, g = jax.value_and_grad(
            lambda p: jnp.mean(jax.vmap(lambda t: task_loss(p, t))(task_batch))
        )(p)
        up, os = opt.update(g, os, p)
        return (optax.apply_updates(p, up), os), loss

    return _timed_contender(step, (params, opt.init(params)), tasks)


# ------------------------------------------------------------------------------ PyTorch


def torch_model():
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(1, 40),
        torch.nn.ReLU(),
        torch.nn.Linear(40, 40),
        torch.nn.ReLU(),
        torch.nn.Linear(40, 1),
    )


def higher_contender(tasks):
    import higher
    import torch

    model = torch_model()
    meta_opt = torch.optim.Adam(model.parameters(), lr=META_LR)
    inner_opt = torch.optim.SGD(model.parameters(), lr=INNER_LR)
    xs, ys = (torch.from_numpy(np.array(a)) for a in tasks.support)
    xq, yq = (torch.from_numpy(np.array(a)) for a in tasks.query)
    holder = {"i": 0}
    n = xs.shape[0]

    def step(i):
        meta_opt.zero_grad()
        for t in range(META_BATCH):
            with higher.innerloop_ctx(model, inner_opt, copy_initial_weights=False) as (f, d):
                for _ in range(INNER_STEPS):
                    d.step(torch.mean((f(xs[i, t]) - ys[i, t]) ** 2))
                (torch.mean((f(xq[i, t]) - yq[i, t]) ** 2) / META_BATCH).backward()
        meta_opt.step()

    def run(k):
        for _ in range(k):
            step(holder["i"] % n)
            holder["i"] += 1

    return run, 0.0


def torchopt_contender(tasks):
    import torch
    import torchopt

    model = torch_model()
    meta_opt = torch.optim.Adam(model.parameters(), lr=META_LR)
    inner = torchopt.MetaSGD(model, lr=INNER_LR)
    xs, ys = (torch.from_numpy(np.array(a)) for a in tasks.support)
    xq, yq = (torch.from_numpy(np.array(a)) for a in tasks.query)
    holder = {"i": 0}
    n = xs.shape[0]

    def step(i):
        meta_opt.zero_grad()
        init = torchopt.extract_state_dict(model)
        for t in range(META_BATCH):
            for _ in range(INNER_STEPS):
                inner.step(torch.mean((model(xs[i, t]) - ys[i, t]) ** 2))
            (torch.mean((model(xq[i, t]) - yq[i, t]) ** 2) / META_BATCH).backward()
            torchopt.recover_state_dict(model, init)
        meta_opt.step()

    def run(k):
        for _ in range(k):
            step(holder["i"] % n)
            holder["i"] += 1

    return run, 0.0


# ------------------------------------------------------------------------------ agreement


def check_agreement(tasks) -> float:
    """Relative difference between metalab's and higher's meta-gradient on one batch."""
    import higher
    import torch

    model = torch_model()
    params = tuple(
        {
            "w": jnp.asarray(model[i].weight.detach().numpy().T),
            "b": jnp.asarray(model[i].bias.detach().numpy()),
        }
        for i in (0, 2, 4)
    )
    one = jax.tree.map(lambda a: jnp.asarray(a[0]), tasks)
    _, g = metalearn.maml_meta_grad(
        params, one, loss_fn=loss_fn, inner_lr=INNER_LR, num_steps=INNER_STEPS
    )
    inner_opt = torch.optim.SGD(model.parameters(), lr=INNER_LR)
    xs, ys = (torch.from_numpy(np.array(a[0])) for a in tasks.support)
    xq, yq = (torch.from_numpy(np.array(a[0])) for a in tasks.query)
    for t in range(META_BATCH):
        with higher.innerloop_ctx(model, inner_opt, copy_initial_weights=False) as (f, d):
            for _ in range(INNER_STEPS):
                d.step(torch.mean((f(xs[t]) - ys[t]) ** 2))
            (torch.mean((f(xq[t]) - yq[t]) ** 2) / META_BATCH).backward()
    gt = np.concatenate(
        [
            np.concatenate([model[i].weight.grad.numpy().T.ravel(), model[i].bias.grad.numpy()])
            for i in (0, 2, 4)
        ]
    )
    gj = np.concatenate(
        [np.concatenate([np.asarray(layer["w"]).ravel(), np.asarray(layer["b"])]) for layer in g]
    )
    return float(np.linalg.norm(gt - gj) / np.linalg.norm(gt))


# ------------------------------------------------------------------------------ memory


def memory_vs_steps(ks=(1, 5, 10, 25, 50, 100)):
    params = mlp_init(jax.random.PRNGKey(0), (1, 40, 40, 1))
    warped = metalearn.WarpParams(*warped_init(jax.random.PRNGKey(0), (1, 40, 40, 1)))
    tasks = make_tasks(1)
    one = jax.tree.map(lambda a: jnp.asarray(a[0]), tasks)
    wl = lambda t, w, b: batch_loss(mse, warped_apply(t, w, b[0]), b[1])
    key = jax.random.PRNGKey(0)
    rows = []
    for k in ks:
        kw = dict(inner_lr=INNER_LR, num_steps=k)
        learners = {
            "maml": (metalearn.maml(loss_fn, **kw), params),
            "leap": (metalearn.leap(loss_fn, **kw), params),
            "warp_leap": (metalearn.warpgrad(wl, **kw), warped),
        }
        row = {"K": k}
        for name, (learner, p) in learners.items():
            t0 = time.perf_counter()
            c = jax.jit(lambda p, learner=learner: learner.meta_grad(p, key, one)).lower(p)
            c = c.compile()
            row[name + "_compile_s"] = time.perf_counter() - t0
            mem = c.memory_analysis()
            row[name + "_MB"] = (mem.temp_size_in_bytes if mem is not None else float("nan")) / 1e6
        rows.append(row)
        print(
            f"K={k:4d}  temp MB: MAML {row['maml_MB']:8.2f}  Leap {row['leap_MB']:6.2f}  "
            f"Warp-Leap {row['warp_leap_MB']:6.2f}   compile s: MAML "
            f"{row['maml_compile_s']:.2f} Leap {row['leap_compile_s']:.2f} Warp-Leap "
            f"{row['warp_leap_compile_s']:.2f}",
            flush=True,
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--steps-per-block", type=int, default=20)
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--torch-threads", type=int, default=2)
    args = ap.parse_args()
    try:
        import higher  # noqa: F401
        import torch
        import torchopt  # noqa: F401
    except ImportError:
        torch = None
    print(f"jax {jax.__version__}, devices {jax.devices()}")
    tasks = make_tasks(64)
    makers = {"metalab": metalab_contender, "handwritten": handwritten_contender}
    if torch is not None:
        # OpenMP spin-waits make multi-threaded torch pathologically slow on an oversubscribed
        # machine; use --torch-threads 1 there (BENCHMARKS.md's peer figures use 2 threads).
        torch.set_num_threads(args.torch_threads)
        print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
        print(f"meta-gradient agreement metalab vs higher: rel. diff {check_agreement(tasks):.2e}")
        makers |= {"higher": higher_contender, "torchopt": torchopt_contender}
    else:
        print("torch/higher/torchopt not installed: PyTorch peers skipped")
    contenders = {}
    for name, make in makers.items():
        run, compile_s = make(tasks)
        run(2)  # warm-up
        contenders[name] = run
        print(f"{name}: compile {compile_s:.2f} s" if compile_s else f"{name}: ready")
    jax_names = ("metalab", "handwritten")
    steps = {
        n: args.steps_per_block if n in jax_names else max(2, args.steps_per_block // 10)
        for n in contenders
    }
    rates = {n: [] for n in contenders}
    cpu = {n: [] for n in contenders}
    for b in range(args.blocks):
        for name, run in contenders.items():
            t0, c0 = time.perf_counter(), time.process_time()
            run(steps[name])
            rates[name].append(steps[name] / (time.perf_counter() - t0))
            cpu[name].append(steps[name] / (time.process_time() - c0))
        print(f"block {b}: " + ", ".join(f"{n} {rates[n][-1]:.2f}/s" for n in rates), flush=True)
    med = {n: float(np.median(r)) for n, r in rates.items()}
    print("\nmeta-steps/s (median over blocks; per CPU-second in brackets):")
    for n, v in med.items():
        print(f"  {n:11s} {v:9.2f}  ({np.median(cpu[n]):9.2f})")
    for peer in [n for n in contenders if n != "metalab"]:
        ratios = np.array(rates["metalab"]) / np.array(rates[peer])
        cratios = np.array(cpu["metalab"]) / np.array(cpu[peer])
        print(
            f"ratio metalab/{peer}: median {np.median(ratios):.2f}x wall, "
            f"{np.median(cratios):.2f}x CPU (per block: {', '.join(f'{r:.2f}' for r in ratios)})"
        )
    ratio = float(np.median(np.array(cpu["metalab"]) / np.array(cpu["handwritten"])))
    print(
        f"goal >= 0.9x the hand-written JAX step (CPU time): {ratio:.2f}x -> "
        f"{'met' if ratio >= 0.9 else 'NOT met'}"
    )
    if not args.skip_memory:
        print("\npeak temporary memory of one meta-gradient (one task batch) vs inner steps K:")
        memory_vs_steps()


if __name__ == "__main__":
    main()
