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
if "xla_cpu_multi_thread_eigen" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
    ).strip()

import argparse
import importlib
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
from metalab.lab.executors import StallError, abandoned_executions
from metalab.lab.progress import Progress
from metalab.lab.report import build_report, verdict_label
from metalab.lab.runner import EXECUTORS, RunOutcome, RunSpec, execute, resolve
from metalab.lab.store import DEFAULT_STORE, Store

EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT, EXIT_NONFINITE = 0, 1, 2, 3
DEFAULT_OUT = Path("metalab-runs") / "report"

EXIT_CODES = """exit codes:
  0    done
  1    an experiment raised an error (the others still ran; its traceback is printed)
  2    bad input: unknown name, bad option or override, unusable --store/--out
       (one line says what and what to do; nothing is computed or written)
  3    some seeds produced non-finite metrics (reported, not stored)
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


def add_store_option(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--store", default=str(DEFAULT_STORE), help="run store (SQLite) path")


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
    if names:
        sp.add_argument("names", nargs="*", help="experiments (default: the default set)")


def _print_outcome(console: Console, out: RunOutcome) -> None:
    spec = out.spec
    console.print(
        f"[bold]{spec.exp.name}[/] preset={spec.preset} seeds={spec.seeds} "
        f"(computed {len(out.computed)}, reused {len(out.reused)}) "
        f"compile {out.compile_seconds:.1f}s run {out.run_seconds:.1f}s"
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


def run_specs(args: argparse.Namespace, specs: Sequence[RunSpec]) -> int:
    """Run validated specs one after the other (one experiment's crash does not stop the
    others), then rebuild the report. Uses ``args.store``, ``args.out``, ``args.executor``,
    ``args.ray_address`` and ``args.chunk``."""
    console = Console(stderr=False, soft_wrap=True)
    store = Store(args.store)
    code = EXIT_OK
    t0 = time.perf_counter()
    with Progress() as progress, progress.bar("experiments", total=len(specs)) as advance:
        for spec in specs:
            try:
                out = execute(spec, store, args.executor, args.ray_address, args.chunk, progress)
            except StallError as e:
                _restart_after_stall(console, spec.exp.name, e)
                code = EXIT_ERROR
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
    verdicts = Store(args.store).latest_verdicts()
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


def cmd_report(args: argparse.Namespace) -> int:
    if not Path(args.store).exists():
        raise ConfigError(f"--store: no run store at {args.store}")
    index = build_report(Store(args.store), args.out)
    Console().print(f"report: {index}")
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
register_module_command(
    "sweep", "run a grid of configs; each check along it", "metalab.lab.sweep", overrides=True
)
register_module_command("scale", "climb an experiment's scale ladder", "metalab.lab.scale")


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
    try:
        code = handlers[args.command](args)
    except ConfigError as e:
        print(f"metalab: error: {e}", file=sys.stderr)
        code = EXIT_BAD_INPUT
    if abandoned_executions():
        # A wedged XLA execution blocks interpreter shutdown; everything is stored already.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
