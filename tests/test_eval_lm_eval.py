"""The lm-eval adapter with real lm-eval: local task YAMLs over a JSON file made here (no hub), a
checkpoint from a real tiny training run, and results logged on that run."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("lm_eval")

import harness.evaluate.lm_eval_adapter as adapter
from harness.errors import ConfigError
from harness.evaluate import evaluate
from harness.evaluate.checkpoint import load_scorer
from harness.evaluate.multiple_choice import MCExample, score_examples
from harness.runs.config import build_run_config
from harness.runs.workspace import Workspace
from harness.tracking.client import Tracker
from harness.train.run import train

TINY = ["model.n_layer=1", "model.d_model=32", "model.n_head=2", "data.tokenizer=byte",
        "data.seq_len=32", "data.batch_size=4", "data.val_batches=1", "train.val_every=2",
        "train.max_steps=2"]
DOCS = [
    {"question": "To be, or not to be:", "choices": ["that is the question", "banana split"],
     "label": 0, "text": "Now is the winter of our discontent", "answer": "x"},
    {"question": "My kingdom for a", "choices": ["horse", "zebra crossing"], "label": 0,
     "text": "Friends, Romans, countrymen, lend me your ears", "answer": "y"},
    {"question": "Wherefore art thou", "choices": ["Romeo", "a xylophone"], "label": 1,
     "text": "All the world's a stage", "answer": "z"},
]
COMMON = """dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
  cache_dir: {cache}
test_split: test
metadata:
  version: 1.0
"""
TASKS = {
    "tiny_mc": """output_type: multiple_choice
doc_to_text: "{{question}}"
doc_to_choice: "{{choices}}"
doc_to_target: "{{label}}"
metric_list:
  - {metric: acc, aggregation: mean, higher_is_better: true}
  - {metric: acc_norm, aggregation: mean, higher_is_better: true}
""",
    "tiny_rolling": """output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{text}}"
metric_list:
  - {metric: word_perplexity, aggregation: weighted_perplexity, higher_is_better: false}
  - {metric: bits_per_byte, aggregation: bits_per_byte, higher_is_better: false}
""",
    "tiny_gen": """output_type: generate_until
doc_to_text: "{{question}}"
doc_to_target: "{{answer}}"
generation_kwargs: {until: ["\\n"], max_gen_toks: 4}
metric_list:
  - {metric: exact_match, aggregation: mean, higher_is_better: true}
""",
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lm_eval")
    config = build_run_config("memoryformer-nano", [*TINY, f"data.cache_dir={tmp}"])
    return train(config, workspace=Workspace(tmp / "home"), progress_bar=None), tmp / "home"


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tasks")
    data = folder / "docs.jsonl"
    data.write_text("".join(json.dumps(doc) + "\n" for doc in DOCS))
    for name, body in TASKS.items():
        header = COMMON.format(data=data, cache=folder / "hf-cache")
        (folder / f"{name}.yaml").write_text(f"task: {name}\n{header}{body}")
    return folder


def test_local_tasks_run_through_lm_eval_and_land_on_the_run(run, task_dir):
    result, home = run
    results = evaluate(result.run_id, list(TASKS), workspace=Workspace(home),
                       lm_eval_include=task_dir)
    metrics = Tracker(Workspace(home).tracking_uri).run(result.run_id).data.metrics
    assert metrics["eval/tiny_mc/n"] == 3 and metrics["eval/tiny_gen/n"] == 3
    for key in ("acc", "acc_stderr", "acc_norm", "acc_norm_stderr"):
        assert metrics[f"eval/tiny_mc/{key}"] == results["tiny_mc"].metrics[key]
    assert metrics["eval/tiny_rolling/bits_per_byte"] > 0
    assert metrics["eval/tiny_gen/exact_match"] == 0  # two training steps do not say "x"
    # lm-eval's acc and acc_norm are ours: the same examples through score_examples.
    scorer, _ = load_scorer(result.checkpoint)
    ours = score_examples([MCExample(d["question"] + " ", tuple(d["choices"]), (d["label"],))
                           for d in DOCS], lambda pairs: [ll for ll, _ in
                                                          scorer.loglikelihood(pairs)])
    assert results["tiny_mc"].metrics["acc"] == pytest.approx(ours["acc"])
    assert results["tiny_mc"].metrics["acc_norm"] == pytest.approx(ours["acc_norm"])


class Request:
    def __init__(self, *args):
        self.args = args


@torch.no_grad()
def test_adapter_methods_against_one_forward_pass(run):
    result, _ = run
    scorer, info = load_scorer(result.checkpoint)
    lm = adapter.HarnessLM(scorer=scorer, info=info)
    assert lm.get_model_info()["harness_run_id"] == result.run_id
    text = "Friends, Romans"  # shorter than the window: one pass scores it all
    tokens = torch.tensor([10, 10, *text.encode()])  # after the "\n\n" document separator
    logprobs = F.log_softmax(scorer.model(tokens[None, :-1])[0].double(), -1)
    expected = logprobs[1:].gather(-1, tokens[2:, None]).sum().item()
    assert lm.loglikelihood_rolling([Request(text)])[0] == pytest.approx(expected, abs=1e-4)
    assert lm.loglikelihood([Request("Friends,", " Romans")])[0] == scorer.loglikelihood(
        [("Friends,", " Romans")])[0]
    # Greedy generation: the argmax chain, cut at the stop string.
    ids = list(b"To be")
    for _ in range(5):
        ids.append(int(scorer.model(torch.tensor([ids[-32:]]))[0, -1].argmax()))
    greedy = bytes(ids[5:]).decode("utf-8", errors="replace")
    assert lm.generate_until([Request("To be", {"max_gen_toks": 5})]) == [greedy]
    stop = greedy[2:3]
    assert lm.generate_until([Request("To be", {"until": [stop], "max_gen_toks": 5})]) == [
        greedy[:greedy.index(stop)]]


def test_hub_tasks_fail_in_one_line_where_the_hub_is_unreachable(run, monkeypatch):
    result, home = run

    def unreachable(*args, **kwargs):
        raise OSError(-2, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    for variable in adapter.OFFLINE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    with pytest.raises(ConfigError, match=r"piqa, arc_easy load their data from the Hugging Face "
                       r"hub .* unreachable from here \(Name or service not known\)") as error:
        evaluate(result.run_id, ["piqa", "arc_easy"], workspace=Workspace(home))
    assert error.value.field == "tasks" and "\n" not in str(error.value)
    with pytest.raises(ConfigError, match=r"piqaa: not a harness or lm-eval task; allowed: "
                       r"ppl:heldout.*did you mean piqa"):
        evaluate(result.run_id, ["piqaa"], workspace=Workspace(home))
