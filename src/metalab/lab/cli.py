"""The ``metalab`` command line.

    metalab list
    metalab run NAME [--preset smoke|quick|full] [--seeds N] [--store PATH]
                     [--executor local|ray] [--ray-address ADDR] [--chunk N] [--out DIR]
                     [field=value ...]
    metalab reproduce [NAME ...] [--preset ...] [--seeds N] [--store PATH] [--out DIR]
    metalab report [--store PATH] [--out DIR]
    metalab show NAME [--preset ...]      (the config fields, their docs and allowed values)

Sub-commands live in one registry, :data:`COMMANDS`, filled at the bottom of this module by
:func:`register_command` (a handler in this module) or :func:`register_module_command` (a module
with ``configure(parser)`` and ``main(args) -> int``, imported only when the parser is built).
Commands that run experiments share :func:`add_run_options` and :func:`run_specs`.
"""

from __future__ import annotations

import os

# XLA's multi-threaded Eigen pool on CPU can wedge (all threads parked, no progress) when a
# program runs many vmapped while-loops, which is what vmapped seeds of lax.scan training loops
# are; single-threaded Eigen avoids it at a small cost. Must be set before jax is imported.
# (jaxlib 0.10.2 wedges even with this flag, hence the pin to jax 0.9.x in pyproject.toml.)
if "xla_cpu_multi_thread_eigen" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
    ).strip()

import argparse
import contextlib
import importlib
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from metalab.experiments import registry
from metalab.experiments.base import PRESETS
from metalab.lab.config import ConfigError, describe_fields
from metalab.lab.executors import StallError, abandoned_executions, enable_compile_cache
from metalab.lab.progress import Progress, fmt_seconds
from metalab.lab.report import build_report, verdict_label
from metalab.lab.runner import (
    EXECUTORS,
    Interrupted,
    RunOutcome,
    RunSpec,
    estimate_seconds,
    execute,
    resolve,
)
from metalab.lab.store import DEFAULT_STORE, Store, StoreError

EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT, EXIT_NONFINITE, EXIT_STORE = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130
DEFAULT_OUT = Path("metalab-runs") / "report"
MAX_SEEDS = 1000  # more seeds than this per experiment needs --yes (or a yes at the prompt)

EXIT_CODES = """exit codes:
  0    done
  1    an experiment raised an error (the others still ran; its traceback is printed);
       for `runs check`: the store has damaged rows
  2    bad input: unknown name, bad option or override, an unusable --store (a directory,
       not a metalab store, not writable) or --out (a file); one line says what is wrong
       and what to do, and nothing is computed or written
  3    some seeds produced non-finite metrics (reported, not stored)
  4    the run store or the report could not be written during the run (e.g. disk full);
       finished seeds are kept
  130  interrupted (Ctrl-C or SIGTERM); finished seeds are stored, the invocation is marked
       interrupted: run the same command again to resume
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # exit 2 with a clear message, as argparse does
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"metalab: error: {message}\n")


# -- the sub-command registry -------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """One sub-command: its parser options and its handler (returns the exit code).

    ``overrides``: the command takes trailing ``field=value`` arguments, collected (wherever
    they appear among the options) into ``args.overrides``.
    """

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None] | None = None
    handler: Callable[[argparse.Namespace], int] | None = None
    module: str | None = None
    overrides: bool = False

    def resolve(self) -> tuple[Callable, Callable]:
        if self.module is None:
            return self.configure, self.handler  # type: ignore[return-value]
        mod = importlib.import_module(self.module)
        return mod.configure, mod.main


COMMANDS: dict[str, Command] = {}


def register_command(
    name: str,
    help: str,
    configure: Callable[[argparse.ArgumentParser], None],
    handler: Callable[[argparse.Namespace], int],
    *,
    overrides: bool = False,
) -> None:
    """Add a sub-command (``configure`` adds its arguments; ``handler`` returns the exit code)."""
    COMMANDS[name] = Command(name, help, configure, handler, overrides=overrides)


def register_module_command(name: str, help: str, module: str, *, overrides: bool = False) -> None:
    """Add a sub-command implemented by ``module`` (``configure(parser)``, ``main(args)``).

    The module is imported when the parser is built, so it may import this one.
    """
    COMMANDS[name] = Command(name, help, module=module, overrides=overrides)


def _parser() -> tuple[argparse.ArgumentParser, dict[str, Callable]]:
    p = _Parser(
        prog="metalab",
        description="Run, judge and report metalab reproductions.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    handlers = {}
    for cmd in COMMANDS.values():
        configure, handler = cmd.resolve()
        sp = sub.add_parser(
            cmd.name,
            help=cmd.help,
            description=cmd.help,
            epilog=EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        configure(sp)
        handlers[cmd.name] = handler
    return p, handlers


# -- shared options and the run loop --------------------------------------------------------------


def add_store_option(sp: argparse.ArgumentParser, inherit: bool = False) -> None:
    """``--store``; ``inherit=True`` for a nested sub-parser (keeps the parent's value)."""
    default = argparse.SUPPRESS if inherit else str(DEFAULT_STORE)
    sp.add_argument("--store", default=default, help="run store (SQLite) path")


def add_run_options(sp: argparse.ArgumentParser, *, names: bool = False) -> None:
    """The options of every command that runs experiments (``run``, ``reproduce``, ...)."""
    sp.add_argument("--preset", default="quick", help=f"one of {', '.join(PRESETS)}")
    sp.add_argument("--seeds", type=int, default=None, help="number of seeds (0..N-1)")
    add_store_option(sp)
    sp.add_argument("--out", default=str(DEFAULT_OUT), help="report directory")
    sp.add_argument("--executor", default="local", help=f"one of {', '.join(EXECUTORS)}")
    sp.add_argument("--ray-address", default=None, help="Ray cluster address (ray executor)")
    sp.add_argument(
        "--chunk", type=int, default=None, help="seeds per compiled call (default: all, up to 8)"
    )
    sp.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="do not use JAX's persistent compilation cache (<store dir>/jax-cache)",
    )
    sp.add_argument(
        "--yes", action="store_true", help=f"run more than {MAX_SEEDS} seeds without asking"
    )
    if names:
        sp.add_argument("names", nargs="*", help="experiments (default: the default set)")


def _print_outcome(console: Console, out: RunOutcome) -> None:
    spec = out.spec
    console.print(
        f"[bold]{spec.exp.name}[/] preset={spec.preset} seeds={spec.seeds} "
        f"(computed {len(out.computed)}, reused {len(out.reused)}) "
        f"compile {out.compile_seconds:.1f}s (XLA {out.xla_seconds:.1f}s) "
        f"run {out.run_seconds:.1f}s"
    )
    for f in out.failures:
        console.print(f"[red]non-finite result, not stored:[/] {f}")
    if out.verdict is None:
        return
    colour = "green" if out.verdict.reproduced else "yellow"
    console.print(f"verdict: [{colour}]{verdict_label(out.verdict)}[/] {out.verdict.summary}")
    for c in out.verdict.checks:
        p = "" if c.p_value != c.p_value else f" p={c.p_value:.3g}"
        console.print(
            f"  {'PASS' if c.passed else 'FAIL'} {c.name}: {c.statistic}="
            f"{c.value:.4g}{p} [{c.threshold}]"
        )


def check_out_dir(out: str | Path) -> Path:
    """Raise :class:`ConfigError` unless ``out`` can be a report directory (writes nothing)."""
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise ConfigError(
            f"--out {p} is a file; pass a directory (the report writes index.md and a page "
            "per experiment there)"
        )
    parent = p
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {p}: cannot write in {parent}; pass a writable directory")
    return p


def prepare_run(args: argparse.Namespace, specs: Sequence[RunSpec]) -> Store:
    """Checks before any compute: the store and report directory are usable, very large seed
    counts are confirmed; then the compile cache is switched on. Returns the store."""
    store = Store(args.store)
    store.check()
    check_out_dir(args.out)
    for spec in specs:
        if spec.seeds > MAX_SEEDS and not getattr(args, "yes", False):
            est = estimate_seconds(spec, store, spec.seeds) if store.exists() else None
            how = (
                f"estimated {fmt_seconds(est[0])} from {est[1]} stored seeds"
                if est
                else "no stored seeds to estimate the time from; try a few seeds first"
            )
            question = f"{spec.exp.name}: run {spec.seeds} seeds ({how})?"
            if sys.stdin.isatty() and sys.stdout.isatty():
                if input(f"{question} [y/N] ").strip().lower() in ("y", "yes"):
                    continue
                raise ConfigError(f"--seeds {spec.seeds}: not confirmed; nothing was run")
            raise ConfigError(
                f"--seeds {spec.seeds} is more than {MAX_SEEDS} ({how}); pass --yes to run "
                "that many"
            )
    store.prepare()
    if not getattr(args, "no_compile_cache", False):
        enable_compile_cache(Path(args.store).parent / "jax-cache")
    return store


def interrupted_line(out: RunOutcome | None) -> str:
    if out is None:
        return "interrupted; finished seeds are stored; run the same command again to resume"
    return (
        f"interrupted; {out.stored} of {out.spec.seeds} seeds of {out.spec.exp.name} stored "
        f"({len(out.computed)} this run); run the same command again to resume"
    )


def run_specs(args: argparse.Namespace, specs: Sequence[RunSpec]) -> int:
    """Run validated specs one after the other (one experiment's crash does not stop the
    others), then rebuild the report. Uses ``args.store``, ``args.out``, ``args.executor``,
    ``args.ray_address`` and ``args.chunk``."""
    store = prepare_run(args, specs)
    console = Console(stderr=False, soft_wrap=True)
    code = EXIT_OK
    t0 = time.perf_counter()
    try:
        with Progress() as progress, progress.bar("experiments", total=len(specs)) as advance:
            for spec in specs:
                try:
                    out = execute(
                        spec, store, args.executor, args.ray_address, args.chunk, progress
                    )
                except StallError as e:
                    _restart_after_stall(console, spec.exp.name, e)
                    code = EXIT_ERROR
                except (KeyboardInterrupt, StoreError):
                    raise
                except Exception:  # one experiment's crash must not stop the others
                    console.print(f"[red]{spec.exp.name} raised an error:[/]")
                    console.print(traceback.format_exc())
                    code = EXIT_ERROR
                else:
                    _print_outcome(console, out)
                    if out.failures and code == EXIT_OK:
                        code = EXIT_NONFINITE
                advance(1)
        index = build_report(store, args.out, [s.exp.name for s in specs])
    except KeyboardInterrupt as e:
        print(
            "metalab: " + interrupted_line(e.outcome if isinstance(e, Interrupted) else None),
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except StoreError as e:
        print(f"metalab: error: {e}", file=sys.stderr)
        return EXIT_STORE
    except OSError as e:  # the results are stored; only the report could not be written
        print(
            f"metalab: error: cannot write the report in {args.out} ({e}); results are stored: "
            "run `metalab report --out DIR` with a writable DIR",
            file=sys.stderr,
        )
        return EXIT_STORE
    console.print(f"report: {index} ({time.perf_counter() - t0:.1f}s in all)")
    return code


def _restart_after_stall(console: Console, name: str, err: StallError) -> None:
    """Re-execute this very command with half the seeds per call (finished seeds are stored,
    so it resumes); a wedged XLA execution cannot be recovered inside the process."""
    console.print(f"[red]{name}:[/] {err}")
    if err.chunk <= 1:
        return
    smaller = err.chunk // 2
    console.print(f"{name}: restarting with at most {smaller} seeds per call")
    sys.stdout.flush()
    sys.stderr.flush()
    os.environ["METALAB_MAX_CHUNK"] = str(smaller)
    os.execv(sys.executable, [sys.executable, "-m", "metalab.lab.cli", *sys.argv[1:]])


# -- the commands -------------------------------------------------------------------------------


def configure_list(sp: argparse.ArgumentParser) -> None:
    add_store_option(sp)


def cmd_list(args: argparse.Namespace) -> int:
    reg = registry.load_all()
    verdicts = Store(args.store, readonly=True).latest_verdicts()
    table = Table(title="metalab experiments", show_lines=True)
    for col in ("name", "paper", "claim", "last verdict"):
        table.add_column(col, overflow="fold")
    for name, exp in reg.items():
        v = verdicts.get(name)
        last = "–" if v is None else ("reproduced" if v["reproduced"] else "not reproduced")
        table.add_row(name, f"{exp.paper.title} ({exp.paper.year})", exp.claim, last)
    console = Console(width=max(Console().width, 140))
    console.print(table)
    for mod, why in registry.unavailable().items():
        console.print(f"[yellow]unavailable[/] {mod}: {why}")
    return EXIT_OK


def configure_run(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("name")
    sp.add_argument("overrides", nargs="*", help="config overrides field=value")
    add_run_options(sp)


def cmd_run(args: argparse.Namespace) -> int:
    spec = resolve(args.name, args.preset, args.seeds, args.overrides, args.executor, args.chunk)
    return run_specs(args, [spec])


def configure_reproduce(sp: argparse.ArgumentParser) -> None:
    add_run_options(sp, names=True)


def cmd_reproduce(args: argparse.Namespace) -> int:
    reg = registry.load_all()
    names = args.names or [n for n, e in reg.items() if e.default]
    if not names:
        raise ConfigError("no experiments are registered")
    # Validate every request first: a bad name writes nothing.
    specs = [resolve(n, args.preset, args.seeds, (), args.executor, args.chunk) for n in names]
    return run_specs(args, specs)


def configure_report(sp: argparse.ArgumentParser) -> None:
    add_store_option(sp)
    sp.add_argument("--out", default=str(DEFAULT_OUT), help="report directory")
    sp.add_argument(
        "--html",
        action="store_true",
        help="also write self-contained HTML pages (index.html; plots inline)",
    )
    sp.add_argument("names", nargs="*", help="experiments (default: every stored one)")


def cmd_report(args: argparse.Namespace) -> int:
    store = Store(args.store, readonly=True)
    if not store.exists():
        raise ConfigError(f"--store: no run store at {args.store}; run an experiment first")
    store.check()
    check_out_dir(args.out)
    index = build_report(store, args.out, args.names or None, html=args.html)
    Console().print(f"report: {index}")
    if args.html:
        Console().print(f"report: {index.with_suffix('.html')}")
    from metalab.lab.sweep_report import write_sweep_reports  # sweeps and scaling studies

    if write_sweep_reports(store, args.out, html=args.html, experiments=args.names or None):
        Console().print(f"sweeps: {Path(args.out) / 'sweeps' / 'index.md'} (and .html pages)")
    return EXIT_OK


def configure_show(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("name")
    sp.add_argument("--preset", default="quick")


def cmd_show(args: argparse.Namespace) -> int:
    try:
        exp = registry.get(args.name)
    except KeyError as e:
        raise ConfigError(str(e.args[0])) from None
    if args.preset not in PRESETS:
        raise ConfigError(f"--preset: got {args.preset!r}; allowed: {', '.join(PRESETS)}")
    console = Console()
    console.print(f"[bold]{exp.name}[/]: {exp.paper.cite}\nclaim: {exp.claim}")
    table = Table(title=f"config ({args.preset} preset, {exp.seeds.get(args.preset)} seeds)")
    for col in ("field", "type", "value", "meaning"):
        table.add_column(col, overflow="fold")
    for row in describe_fields(exp.config(args.preset)):
        table.add_row(*row)
    console.print(table)
    return EXIT_OK


def configure_runs(sp: argparse.ArgumentParser) -> None:
    add_store_option(sp)
    acts = sp.add_subparsers(dest="action", parser_class=_Parser, metavar="ACTION")
    ls = acts.add_parser("list", help="stored config groups (the default action)")
    ls.add_argument("names", nargs="*", help="experiments (default: all)")
    add_store_option(ls, inherit=True)
    rm = acts.add_parser("delete", help="delete an experiment's stored seeds and verdicts")
    rm.add_argument("name")
    rm.add_argument("--config", default=None, help="only this config hash")
    rm.add_argument("--code-version", default=None, help="only this code version")
    add_store_option(rm, inherit=True)
    pr = acts.add_parser("prune", help="delete results of code versions that are not current")
    add_store_option(pr, inherit=True)
    ck = acts.add_parser("check", help="check the store's integrity and every stored row")
    ck.add_argument("--fix", action="store_true", help="delete unreadable rows")
    add_store_option(ck, inherit=True)


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def cmd_runs(args: argparse.Namespace) -> int:
    from metalab.lab.version import code_version

    action = args.action or "list"
    writes = action in ("delete", "prune") or (action == "check" and args.fix)
    store = Store(args.store, readonly=not writes)
    if not store.exists():
        raise ConfigError(f"--store: no run store at {args.store}; run an experiment first")
    store.check()
    console = Console(soft_wrap=True, width=max(Console().width, 160))

    def current(name: str) -> str | None:
        try:
            return code_version(*registry.modules_of(name))
        except KeyError:
            return None

    if action == "list":
        names = getattr(args, "names", None)
        groups = [g for g in store.groups() if not names or g.experiment in names]
        table = Table(title=f"runs in {store.path}")
        for col in ("experiment", "preset", "config", "code version", "seeds", "verdict", "last"):
            table.add_column(col, no_wrap=True)
        versions: dict[str, str | None] = {}
        for g in groups:
            if g.experiment not in versions:
                versions[g.experiment] = current(g.experiment)
            tag = "" if versions[g.experiment] == g.code_version else " (old)"
            seeds = f"{g.seeds}/{g.asked}" if g.asked else str(g.seeds)
            status = "" if g.status in ("finished", "?") else f" [{g.status}]"
            table.add_row(
                g.experiment,
                g.preset,
                g.config_hash,
                g.code_version + tag,
                seeds,
                g.verdict + status,
                _when(g.last_finished),
            )
        console.print(table)
        from metalab.lab.sweep import sweeps_table  # sweeps and scaling studies (issue 17)

        if (sweeps := sweeps_table(store, names or None)) is not None:
            console.print(sweeps)
        return EXIT_OK
    if action == "delete":
        n = store.delete(args.name, args.config, args.code_version)
        console.print(f"deleted {n} stored seed(s) of {args.name}")
        return EXIT_OK
    if action == "prune":
        reg = registry.load_all()
        keep = {name: code_version(*registry.modules_of(name)) for name in reg}
        n = store.prune(keep)
        console.print(f"pruned {n} stored seed(s) of code versions that are not current")
        return EXIT_OK
    msgs, bad = store.integrity()
    for m in msgs:
        if m != "ok":
            console.print(f"sqlite: {m}")
    for row in bad:
        console.print(f"unreadable: {row}")
    if bad and args.fix:
        n = store.delete_rows(bad)
        console.print(f"deleted {n} unreadable row(s); the next run recomputes them")
        bad = []
    ok = msgs == ["ok"] and not bad
    console.print("store ok" if ok else "store has problems (see above)")
    return EXIT_OK if ok else EXIT_ERROR


# -- the sub-commands, in help order (add new ones here) -----------------------------------------

register_command(
    "list", "every experiment, its paper, claim and last verdict", configure_list, cmd_list
)
register_command("run", "run one experiment and report it", configure_run, cmd_run, overrides=True)
register_command(
    "reproduce", "run experiments and write the report", configure_reproduce, cmd_reproduce
)
register_command("report", "rebuild reports from the store", configure_report, cmd_report)
register_command("show", "an experiment's config fields and presets", configure_show, cmd_show)
register_command(
    "runs", "stored runs: list, delete, prune old code versions, check", configure_runs, cmd_runs
)
register_module_command(
    "sweep", "run a grid of configs; each check along it", "metalab.lab.sweep", overrides=True
)
register_module_command("scale", "climb an experiment's scale ladder", "metalab.lab.scale")


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser, handlers = _parser()
    args, extra = parser.parse_known_args(argv)
    # Overrides may come before or after options: argparse leaves late ones in ``extra``.
    takes_overrides = COMMANDS[args.command].overrides
    stray = [a for a in extra if a.startswith("-") or "=" not in a]
    if stray or (extra and not takes_overrides):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if takes_overrides:
        args.overrides = list(getattr(args, "overrides", None) or []) + extra
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # piped output shows as it comes
    previous = None
    with contextlib.suppress(ValueError):  # not the main thread (tests calling main())
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        code = handlers[args.command](args)
    except (ConfigError, StoreError) as e:
        print(f"metalab: error: {e}", file=sys.stderr)
        code = EXIT_BAD_INPUT
    except KeyboardInterrupt as e:
        out = e.outcome if isinstance(e, Interrupted) else None
        print("metalab: " + interrupted_line(out), file=sys.stderr)
        code = EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if abandoned_executions():
        # A wedged XLA execution blocks interpreter shutdown; everything is stored already.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
