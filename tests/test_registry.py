"""A shared test over the registry: every experiment honours the contract and runs end to end.

Each registered experiment's `smoke` preset is run through the lab's runner (2 seeds, a fresh
store), its verdict computed and its report page written; so every new method is covered.
"""

from __future__ import annotations

import dataclasses

import pytest

from metalab.core.checks import rules_hash
from metalab.experiments import registry
from metalab.experiments.base import PRESETS, Verdict
from metalab.lab.config import ConfigError, apply_overrides, config_hash
from metalab.lab.report import build_report
from metalab.lab.runner import execute, resolve
from metalab.lab.store import Store

EXPERIMENTS = registry.load_all()


def test_registry_is_not_empty_and_nothing_failed_to_import():
    assert "optimistic-mg" in EXPERIMENTS
    assert registry.unavailable() == {}


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_contract(name):
    exp = EXPERIMENTS[name]
    assert name == name.lower() and " " not in name
    assert exp.claim.strip() and exp.paper.title and exp.paper.year > 1990
    for preset in PRESETS:
        cfg = exp.config(preset)
        assert dataclasses.is_dataclass(cfg)
        # Presets respect their own declared ranges and choices.
        for f in dataclasses.fields(cfg):
            assert f.metadata["doc"].strip(), f"{name}.{f.name} has an empty doc"
        again = apply_overrides(cfg, [])
        assert config_hash(again) == config_hash(cfg)
    assert exp.seeds["quick"] >= 3, "a verdict needs several seeds"
    with pytest.raises(ConfigError, match="unknown config field"):
        apply_overrides(exp.config("smoke"), ["definitely_not_a_field=1"])
    assert config_hash(exp.config("smoke")) != config_hash(exp.config("full"))


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_smoke_runs_end_to_end(name, tmp_path):
    spec = resolve(name, "smoke", seeds=2)
    store = Store(tmp_path / "store.sqlite")
    out = execute(spec, store)
    assert out.failures == [], out.failures
    assert sorted(out.computed) == [0, 1]
    assert isinstance(out.verdict, Verdict) and out.verdict.checks
    for c in out.verdict.checks:
        assert c.threshold and c.statistic
    exp = EXPERIMENTS[name]
    # checks are exactly the declared rules, each with its rule text
    assert [c.name for c in out.verdict.checks] == [r.name for r in exp.rules]
    assert [c.rule for c in out.verdict.checks] == [r.text() for r in exp.rules]
    assert out.verdict.rules_hash == rules_hash(exp.rules)
    index = build_report(store, tmp_path / "report", [name])
    assert f"[{name}]({name}.md)" in index.read_text()
    assert (tmp_path / "report" / f"{name}.md").exists()
