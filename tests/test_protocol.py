"""Tune, then compare: each arm's sweep is extended past an edge optimum, then the arms run at
their own best rates under every budget of the comparison."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from harness.ablate.cells import Cell
from harness.ablate.protocol import Sweep, load, next_values, parse_protocol, sweeps_of
from harness.ablate.runner import run_protocol
from harness.errors import ConfigError
from harness.runs import records
from harness.tracking.client import Tracker

FAIR = Path(__file__).parent.parent / "ablations" / "fair-dense-vs-memory.yaml"
VALUES = (1e-3, 3e-3, 9e-3)


def _cell(number: int, lr: float, tokenizer: str, loss: float | None) -> Cell:
    params = {"arm": "a", "optim.lr": lr, "data.tokenizer": tokenizer, "seed": 0}
    trial = optuna.trial.create_trial(
        params=params, distributions={k: CategoricalDistribution([v]) for k, v in params.items()},
        value=loss, state=TrialState.COMPLETE if loss is not None else TrialState.FAIL)
    return Cell(number, trial)


def _protocol():
    return load(FAIR)


def test_an_edge_optimum_extends_the_sweep_past_that_edge_only():
    protocol = _protocol()
    losses = {"bpe": (3.0, 2.9, 2.8), "byte": (2.0, 1.9, 2.1)}  # bpe: best at the top edge
    cells = [_cell(i, lr, tok, losses[tok][j]) for i, (tok, (j, lr)) in enumerate(
        (t, x) for t in losses for x in enumerate(VALUES))]
    sweeps = sweeps_of("a", protocol, [cells])
    assert [s.arm for s in sweeps] == ["a@bpe", "a@byte"]
    assert [(s.best, s.bracketed) for s in sweeps] == [(9e-3, False), (3e-3, True)]
    assert next_values(sweeps, VALUES) == (0.027,)  # one grid step (x3) above the edge
    # the round after: 0.027 is worse, so bpe is bracketed too and the sweep stops
    more = [_cell(10, 0.027, "bpe", 2.85), _cell(11, 0.027, "byte", 2.5)]
    sweeps = sweeps_of("a", protocol, [cells, more])
    assert all(s.bracketed for s in sweeps) and next_values(sweeps, VALUES) == ()
    assert sweeps[0].values == (1e-3, 3e-3, 9e-3, 0.027) and sweeps[0].best == 9e-3


def test_a_low_edge_extends_downwards_and_failed_trials_are_not_ranked():
    cells = [_cell(0, 1e-3, "bpe", 2.0), _cell(1, 3e-3, "bpe", 2.5), _cell(2, 9e-3, "bpe", None)]
    sweeps = sweeps_of("a", _protocol(), [cells])
    assert sweeps == [Sweep("a@bpe", (1e-3, 3e-3), (2.0, 2.5), 1e-3)]
    assert next_values(sweeps, VALUES) == (0.0003333,)


def test_the_compare_phase_runs_each_arm_at_its_own_best_rate():
    protocol = _protocol()
    sweeps = [Sweep(f"{arm}@{tok}", VALUES, (2.0, 1.0, 3.0), best)
              for arm, best in (("dense", 3e-3), ("memoryformer", 9e-3))
              for tok in ("bpe", "byte")]
    flops, seconds = protocol.compare_studies(sweeps)
    assert (flops.name, flops.budget, seconds.name, seconds.budget) == (
        "fair-dense-vs-memory-flops", "flops", "fair-dense-vs-memory-seconds", "seconds")
    assert len(flops.cells()) == 4 * 5  # 2 arms x 2 tokenizers x 5 seeds
    config = flops.run_config({"arm": "memoryformer@byte", "seed": 3})
    assert (config.preset, config.optim.lr, config.data.tokenizer) == (
        "memoryformer-nano", 9e-3, "byte")
    assert flops.run_config({"arm": "dense@bpe", "seed": 0}).optim.lr == 3e-3
    assert "dense@bpe: optim.lr 0.003 " in flops.description  # bracketed: no flag
    assert "memoryformer@byte: optim.lr 0.009 (NOT bracketed" in flops.description


@pytest.mark.parametrize("change, field", [
    ({"tune": {"values": [1e-3]}}, "tune.values"),
    ({"compare": {"budgets": []}}, "compare.budgets"),
    ({"colour": "red"}, "colour"),
    ({"kind": "tune-twice"}, "kind"),
])
def test_bad_protocols_name_the_field(tmp_path, change, field):
    raw = {**yaml.safe_load(FAIR.read_text()), **change}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=rf"^{field}: "):
        load(path)


def test_a_shrunk_protocol_runs_every_phase_end_to_end(shrink_protocol, settings):
    protocol = shrink_protocol(yaml.safe_load(FAIR.read_text()))
    phases = run_protocol(protocol, settings)
    names = [study.name for study, _ in phases]
    assert names[0] == "fair-dense-vs-memory-tune-dense-0"
    assert names[-2:] == ["fair-dense-vs-memory-flops", "fair-dense-vs-memory-seconds"]
    for study, cells in phases:
        assert cells and all(c.trial.state == TrialState.COMPLETE for c in cells), study.name
    compare = phases[-1][0]
    assert {a.label for a in compare.arms} == {
        "dense@bpe", "dense@byte", "memoryformer@bpe", "memoryformer@byte"}
    for sweep in compare.sweeps:  # an unbracketed sweep got its extension round
        arm = sweep.arm.split("@")[0]
        rounds = [n for n in names if n.startswith(f"fair-dense-vs-memory-tune-{arm}-")]
        assert sweep.bracketed or len(rounds) == 2
        tuned = next(a for a in compare.arms if a.label == sweep.arm)
        assert dict(tuned.values)["optim.lr"] == sweep.best
    parent = next(r for r in Tracker(settings.tracking_uri).runs(compare.name)
                  if r.data.tags.get(records.ROLE) == records.ROLE_STUDY)
    assert len(json.loads(parent.data.params["study.sweeps"])) == 4
    assert parent.data.params["study.budget"] == "seconds"


def test_parse_protocol_checks_every_phase_before_anything_runs():
    raw = yaml.safe_load(FAIR.read_text())
    raw["arms"]["dense"] = {"preset": "dense-nanoo"}
    with pytest.raises(ConfigError, match=r"^preset: 'dense-nanoo' is not a preset"):
        parse_protocol(raw)
