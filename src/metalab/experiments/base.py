"""The experiment contract every reproduction implements (see DESIGN.md).

An experiment module builds one :class:`Experiment` and exposes it as the module-level
name ``EXPERIMENT``; :mod:`metalab.experiments.registry` collects them by name.

Metrics convention (what ``run`` returns for one seed): a flat ``dict[str, array]``.

* 0-d arrays are scalars. Keys of the form ``"group/method"`` (e.g. ``"iters/gd"``) are shown
  together: one results table per group, a mean and 95% bootstrap CI per method, and a
  method-comparison bar plot.
* 1-d arrays are curves over steps (e.g. ``"subopt/gd"``); curves of one group share a plot
  (mean over seeds with a 95% band). Put the x axis in ``"<group>@x"`` if it is not 0..T-1.
* Higher-dimensional arrays, and any key containing ``"@"`` (e.g. ``"iters@instance/gd"``,
  one value per problem instance), are stored but not plotted by the generic report; an
  experiment may draw its own figures with ``plot``.

Every value must be finite: the lab rejects a seed whose metrics hold a NaN or Inf and reports
the metric, the seed and the first step at which it appeared.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

Metrics = dict[str, Any]
PRESETS = ("smoke", "quick", "full")


def param(
    default: Any,
    doc: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    choices: Sequence[Any] | None = None,
    allow_nonfinite: bool = False,
    path: bool = False,
    validator: Callable[[Any], None] | None = None,
) -> Any:
    """A documented config field with an optional range or set of allowed values.

    Use inside a frozen dataclass: ``steps: int = param(500, "optimisation steps", lo=1)``.
    ``lo``/``hi`` are inclusive bounds (applied to every element of a tuple field).
    ``allow_nonfinite``: NaN/Inf overrides are accepted (rejected otherwise). ``path``: the
    value is a file that must exist. ``validator(value)`` raises ``ValueError`` with a message
    for a bad value; both are checked before anything is computed or written.
    """
    meta = {
        "doc": doc,
        "lo": lo,
        "hi": hi,
        "choices": tuple(choices) if choices else None,
        "allow_nonfinite": allow_nonfinite,
        "path": path,
        "validator": validator,
    }
    if isinstance(default, list | dict | set):
        raise TypeError("config defaults must be immutable: use a tuple instead of a list")
    return field(default=default, metadata=meta)


def file_or(*names: str, suffix: str = "") -> Callable[[Any], None]:
    """A ``param(validator=...)`` for a value that is one of ``names`` or an existing file
    (``suffix`` replaces the path's suffix first, as loaders that append ``.npz`` do)."""

    def check(value: Any) -> None:
        if value in names:
            return
        path = Path(str(value))
        if suffix:
            path = path.with_suffix(suffix)
        if not path.is_file():
            raise ValueError(
                f"got {value!r}: no file at {str(path)!r}; give "
                + " or ".join([*map(repr, names), "the path of an existing file"])
            )

    return check


@dataclass(frozen=True)
class Paper:
    """Bibliographic record of the reproduced paper."""

    title: str
    authors: str
    year: int
    arxiv: str = ""

    @property
    def cite(self) -> str:
        tail = f", arXiv:{self.arxiv}" if self.arxiv else ""
        return f"{self.authors} ({self.year}). {self.title}{tail}"


@dataclass(frozen=True)
class Check:
    """One statistical check of a claim.

    Attributes:
      name: short label of the check, e.g. ``"meta-learned beats GD"``.
      statistic: name of the statistic (``"median speed-up"``) and ``value`` its value.
      effect_size: a standardised or ratio effect size (``nan`` if not applicable).
      p_value: the test's p-value (``nan`` if the check uses a CI instead).
      ci: a (low, high) confidence interval for ``value`` (``(nan, nan)`` if none).
      threshold: the pass rule in words, e.g. ``"p < 0.05 and speed-up > 1"``.
      passed: whether the rule holds.
      test: the name of the test (``"Wilcoxon signed-rank, one-sided"``).
      rule: the declared rule, verbatim (:meth:`metalab.core.checks.Rule.text`).
      p_adjusted: the p-value after Holm's adjustment within ``group`` (= ``p_value`` alone).
      mde: minimum detectable effect at 80% power, in the units of ``value``.
      n: the number of units tested (seeds, pairs or problems).
      ci_level: the confidence level of ``ci`` (``1 - 2 alpha`` for one-sided tests).
      group: the Holm group ('' if none).
      effect_name: what ``effect_size`` is (``"d_z"``, ``"rank-biserial r"``...).

    Checks are built by :func:`metalab.core.checks.judge` from declared rules, never by hand.
    """

    name: str
    statistic: str
    value: float
    passed: bool
    threshold: str
    p_value: float = math.nan
    effect_size: float = math.nan
    ci: tuple[float, float] = (math.nan, math.nan)
    test: str = ""
    rule: str = ""
    p_adjusted: float = math.nan
    mde: float = math.nan
    n: int = 0
    ci_level: float = math.nan
    group: str = ""
    effect_name: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["ci"] = list(self.ci)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Check:
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["ci"] = tuple(d.get("ci", (math.nan, math.nan)))
        return cls(**d)


@dataclass(frozen=True)
class Verdict:
    """The outcome of an experiment: its checks (all must pass) and a prose summary.

    ``reproduced`` is True iff every check passed. ``notes`` says, in the report, what was
    tried and what the numbers mean, especially when the claim does not reproduce.
    """

    checks: tuple[Check, ...]
    summary: str = ""
    notes: str = ""
    rules_hash: str = ""

    @property
    def reproduced(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "checks": [c.to_dict() for c in self.checks],
            "summary": self.summary,
            "notes": self.notes,
            "reproduced": self.reproduced,
            "rules_hash": self.rules_hash,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Verdict:
        return cls(
            checks=tuple(Check.from_dict(c) for c in d["checks"]),
            summary=d.get("summary", ""),
            notes=d.get("notes", ""),
            rules_hash=d.get("rules_hash", ""),
        )


RunFn = Callable[[Any, Any], Metrics]
VerdictFn = Callable[[Sequence[Metrics], Any], Verdict]
PlotFn = Callable[[Sequence[Metrics], Any, Path], list[Path]]


@dataclass(frozen=True)
class Experiment:
    """A registered reproduction.

    Attributes:
      name: registry name, lower-case with dashes (``"optimistic-mg"``).
      paper: the paper reproduced.
      claim: the claim in one sentence, as the paper states it.
      config_cls: a frozen dataclass whose fields are declared with :func:`param`.
      presets: ``{"smoke": cfg, "quick": cfg, "full": cfg}``, instances of ``config_cls``.
      seeds: default number of seeds per preset, e.g. ``{"smoke": 2, "quick": 8, "full": 20}``.
      run: ``run(config, key) -> Metrics`` for one seed; pure in its inputs.
      verdict: ``verdict(data, config) -> Verdict`` where ``data`` maps each metric to a numpy
        array whose leading axis is the seed (see :func:`metalab.core.checks.stack_seeds`);
        its checks come from ``metalab.core.checks.judge(rules, ...)``.
      rules: the declared checks (:class:`metalab.core.checks.Rule`), written from the claim
        before any numbers are seen; the report prints them verbatim and the store records
        their hash with every verdict.
      vmappable: True if ``jax.jit(jax.vmap(lambda k: run(config, k)))`` works; the local
        executor then runs all seeds of a chunk in one compiled call.
      plot: optional ``plot(metrics_list, config, out_dir) -> [png paths]`` for figures the
        generic report cannot draw.
      max_chunk: the most seeds the local executor may vmap into one compiled call (None: no
        limit beyond the lab's default). For programs too large to batch further, or that
        trip an XLA-CPU runtime hang seen with very wide vmapped while-loops.
      default: part of ``metalab reproduce``'s default selection.
      tags: free-form labels (``"metagrad"``, ``"rl"``) used by ``metalab list``.
      ladder: the scale ladder of ``metalab scale``, cheapest rung first: each rung a dict of
        config overrides plus optional ``"preset"`` (default ``"smoke"``) and ``"seeds"``; the
        first config field the rungs name is the scale knob (see :mod:`metalab.lab.scale`).
    """

    name: str
    paper: Paper
    claim: str
    config_cls: type
    presets: Mapping[str, Any]
    run: RunFn
    verdict: VerdictFn
    seeds: Mapping[str, int] = field(default_factory=lambda: {"smoke": 2, "quick": 5, "full": 10})
    vmappable: bool = True
    plot: PlotFn | None = None
    max_chunk: int | None = None
    default: bool = True
    tags: tuple[str, ...] = ()
    rules: tuple[Any, ...] = ()
    ladder: tuple[Mapping[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if not self.rules:
            raise ValueError(
                f"{self.name}: declare the claim's checks as rules=(Rule(...), ...) "
                "(metalab.core.checks); a verdict is computed from declared rules only"
            )
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: rule names must be unique; got {names}")
        if not dataclasses.is_dataclass(self.config_cls):
            raise TypeError(f"{self.name}: config_cls must be a dataclass")
        if not self.config_cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
            raise TypeError(f"{self.name}: config_cls must be frozen")
        missing = [p for p in PRESETS if p not in self.presets]
        if missing:
            raise ValueError(f"{self.name}: presets missing {missing}")
        for p, cfg in self.presets.items():
            if not isinstance(cfg, self.config_cls):
                raise TypeError(f"{self.name}: preset {p!r} is not a {self.config_cls.__name__}")
        for f in dataclasses.fields(self.config_cls):
            if "doc" not in f.metadata:
                raise ValueError(
                    f"{self.name}: config field {f.name!r} has no doc; declare it with param()"
                )

    def config(self, preset: str = "quick") -> Any:
        if preset not in self.presets:
            raise KeyError(f"unknown preset {preset!r}; allowed: {', '.join(PRESETS)}")
        return self.presets[preset]

    def judge(self, metrics: Sequence[Metrics], config: Any) -> Verdict:
        """The verdict over seeds: stacks the seeds' metrics and calls ``verdict``.

        The verdict's checks must be exactly the declared ``rules``, in order (each computed by
        :func:`metalab.core.checks.judge`); anything else is an error, so that no verdict can
        add, drop or hand-build a check.
        """
        from metalab.core.checks import rules_hash, stack_seeds

        v = self.verdict(stack_seeds(metrics), config)
        texts = [r.text() for r in self.rules]
        got = [(c.name, c.rule) for c in v.checks]
        want = [(r.name, t) for r, t in zip(self.rules, texts, strict=True)]
        if got != want:
            raise ValueError(
                f"{self.name}: the verdict's checks {[g[0] for g in got]} are not the declared "
                f"rules {[w[0] for w in want]} (build them with metalab.core.checks.judge)"
            )
        return dataclasses.replace(v, rules_hash=rules_hash(self.rules))

    def field_docs(self) -> dict[str, str]:
        return {f.name: f.metadata["doc"] for f in dataclasses.fields(self.config_cls)}


def config_types(config_cls: type) -> dict[str, Any]:
    """Resolved type hints of a config dataclass (works with postponed annotations)."""
    return typing.get_type_hints(config_cls)


def to_numpy_metrics(metrics: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Convert a metrics pytree (jax or numpy leaves) to a dict of numpy arrays."""
    return {k: np.asarray(v) for k, v in metrics.items()}
