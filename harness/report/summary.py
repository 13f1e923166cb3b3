"""index.md: what the study is, what won and how sure that is, the table and figures, how the
FLOPs columns are counted, and where the runs come from."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, replace

import pandas as pd

from harness.report.cells import FINISHED, StudyInfo, standard_error
from harness.report.chance import MARGIN, above_chance, chance_key, is_accuracy, source_text
from harness.report.fairness import budget_sentence
from harness.report.paper import PaperTable, same_value
from harness.report.quantities import STANDARD, catalogue
from harness.report.reader import tag_column
from harness.report.spread import SPREAD_LIMIT, throughput_spreads
from harness.report.stats import (
    ALPHA,
    POWER,
    Paired,
    Trend,
    holm,
    is_number,
    paired,
    pareto_front,
    trend,
)
from harness.report.tables import Table, format_stat, to_markdown
from harness.runs import records

PROVENANCE_TAGS = (  # (label, tag)
    ("git commit", "git.commit"), ("git dirty", "git.dirty"), ("host", "host.name"),
    ("platform", "host.platform"), ("python", "host.python"), ("torch threads", "torch.threads"),
    ("device", "torch.device"), ("corpus digest", records.CORPUS_DIGEST),
    ("tokenizer digest", records.TOKENIZER_DIGEST),
)
_PPL = next(q for q in STANDARD if q.key == "val_ppl")


@dataclass(frozen=True)
class Figure:
    file: str
    caption: str


def index_markdown(info: StudyInfo, runs: pd.DataFrame, cells: pd.DataFrame, table: Table,
                   paper: PaperTable | None, figures: list[Figure], provenance: list[str],
                   files: dict[str, str], per_seed: str | None = None,
                   sections: tuple[tuple[str, list[str]], ...] = (),
                   appendix: Table | None = None, flops: str = "",
                   late_sections: tuple[tuple[str, list[str]], ...] = ()) -> str:
    """runs: `cells.per_run`; cells: `cells.aggregate` with val_ppl, val_loss, flops_exact,
    flops_paper, table_bytes and tokens_per_s; provenance: `provenance_lines` output;
    per_seed: the file of per-run values beside index.md, if one is written; sections: (title,
    lines) placed after the outcome; appendix: the table of every other quantity; flops: the
    FLOPs paragraph (flops_text), left out when empty; late_sections: (title, lines) after the
    appendix (secondary measurements, such as bucket usage)."""
    parts = [f"# Study report: {info.name}", ""]
    if info.description.strip():
        parts += ["> " + " ".join(info.description.split()), ""]
    parts += [design(info, runs), "", "## What won", "", *outcome(info, runs, cells, paper), ""]
    for title, lines in sections:  # tuning sweeps, scaling fits: where the study has them
        parts += [f"## {title}", "", *lines, ""]
    parts += ["## Table", "", to_markdown(table),
              "Also as " + ", ".join(f"[{k}]({v})" for k, v in files.items()) + ".", ""]
    if per_seed:
        parts += [f"Per-seed values: [{per_seed}]({per_seed}), one row per trial run (cell, "
                  "seed, status and every quantity), so each mean, interval and test above can "
                  "be recomputed.", ""]
    if figures:
        parts += ["## Figures", ""]
        for figure in figures:
            parts += [f"![{figure.caption}]({figure.file})", "", f"*{figure.caption}*", ""]
    if appendix is not None and any(appendix.numeric_columns):
        parts += ["## Appendix: every other quantity", "", to_markdown(appendix), ""]
    for title, lines in late_sections:
        parts += [f"## {title}", "", *lines, ""]
    if flops:
        parts += ["## FLOPs: exact count against the paper's approximation", "", flops, ""]
    parts += ["## Provenance", "", *provenance, ""]
    return "\n".join(parts).rstrip() + "\n"


def design(info: StudyInfo, runs: pd.DataFrame) -> str:
    if info.is_search:
        space = "a search over " + ", ".join(f"`{n}`" for n in info.axis_names)
    elif info.axes:
        space = "a grid over " + "; ".join(
            f"`{n}` in {{{', '.join(map(str, v))}}}" if v else f"`{n}`" for n, v in info.axes)
    else:
        space = "one cell"
    seeds = ", ".join(map(str, info.seeds)) or "unknown"
    budget = budget_sentence(info)
    counts = Counter(runs["status"])
    status = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    objectives = f"; objectives {info.objectives}" if info.objectives else ""
    return (f"**Design.** {space}; seeds {seeds}; {budget}{objectives}. "
            f"{runs['cell'].nunique()} cells, {len(runs)} trial runs ({status or 'none'}).")


def outcome(info: StudyInfo, runs: pd.DataFrame, cells: pd.DataFrame,
            paper: PaperTable | None) -> list[str]:
    ranked = cells.dropna(subset=["val_ppl.mean"]).sort_values("val_ppl.mean")
    if ranked.empty:
        return ["No cell has a finished run with a validation loss yet: nothing to rank."]
    tests = run_tests(runs, ranked, paper, ordered_knob(info, runs))
    spreads = throughput_spreads(runs)
    best = ranked.iloc[0]
    n = int(best["val_ppl.n"])
    spread = f"mean ± se over {n} seeds" if n > 1 else "one seed: no error estimate"
    lines = [f"- **Best cell: {best['cell']}**, validation perplexity {_ppl(best)} "
             f"({spread}); lower is better." + _best_caveat(tests, ranked)]
    if len(ranked) > 1:
        lines.append("- Against the runner-up, " + compare(tests, ranked.iloc[1], best))
    bests = _kind_bests(ranked)
    if bests is not None:
        memory, dense = bests
        repeated = {memory["cell"], dense["cell"]} == set(ranked["cell"].iloc[:2])
        lines += kinds_compared(tests, memory, dense, paired_too=not repeated, spreads=spreads)
    if tests.trend is not None:
        lines.append(trend_line(tests.trend))
    front = ranked[pareto_front(ranked["flops_exact.mean"], ranked["val_ppl.mean"])]
    if len(ranked) > 2 and not front.empty:
        lines.append("- Pareto front of perplexity against FLOPs per token: "
                     + ", ".join(front.sort_values("flops_exact.mean")["cell"]) + ".")
    if paper is not None:
        lines += paper_lines(ranked, paper, tests)
    if "model.attention" in ranked.columns:
        lines += attention_lines(tests, ranked)
    if tests.family:
        lines.append(_tests_note(tests.family))
    lines += [f"- Throughput flag: {spread.sentence()}." for spread in
              throughput_spreads(runs).values()]
    lines += chance_lines(runs)
    failed = cells[cells["n_finished"] < cells["n_runs"]]
    if not failed.empty:
        lines.append(f"- {_count(len(failed), 'cell')} with runs that did not finish: the "
                     "table's footnotes say which and why.")
    return lines


@dataclass(frozen=True)
class Verdict:
    """One test as the text reports it, with its p adjusted over every test of the report."""

    test: Paired | Trend
    p_adjusted: float | None
    family: int  # tests adjusted together: those with a p value

    @property
    def detected(self) -> bool:
        """Whether the text may claim a direction."""
        return self.p_adjusted is not None and self.p_adjusted < ALPHA


@dataclass(frozen=True)
class Tests:
    """Every test one report prints, Holm-adjusted together: a page of comparisons then claims a
    direction by chance no more often than a single comparison at ALPHA would."""

    pairs: tuple[Verdict, ...]
    trend: Verdict | None
    family: int

    def pair(self, a: str, b: str) -> Verdict | None:
        """Cell b against cell a (b - a), whichever order the test ran in."""
        for verdict in self.pairs:
            if (verdict.test.a, verdict.test.b) == (a, b):
                return verdict
            if (verdict.test.a, verdict.test.b) == (b, a):
                return replace(verdict, test=_flipped(verdict.test))
        return None


def run_tests(runs: pd.DataFrame, ranked: pd.DataFrame, paper: PaperTable | None,
              knob: str | None) -> Tests:
    """The paired val-loss tests of every pair the text compares, and the knob's trend."""
    unique: dict[frozenset[str], tuple[str, str]] = {}
    for a, b in planned_pairs(ranked, paper):
        unique.setdefault(frozenset((a, b)), (a, b))
    results = [r for a, b in unique.values() if (r := paired(runs, a, b)) is not None]
    slope = trend(runs, knob) if knob else None
    tested: list[Paired | Trend] = [*results, *([slope] if slope else [])]
    adjusted = holm([t.p for t in tested])
    family = sum(t.p is not None for t in tested)
    verdicts = [Verdict(t, p, family) for t, p in zip(tested, adjusted, strict=True)]
    return Tests(tuple(verdicts[:len(results)]), verdicts[-1] if slope else None, family)


def planned_pairs(ranked: pd.DataFrame, paper: PaperTable | None) -> list[tuple[str, str]]:
    """Every (a, b) of cells the text compares: the same choices `outcome` prints from."""
    pairs = []
    if len(ranked) > 1:
        pairs.append((ranked.iloc[0]["cell"], ranked.iloc[1]["cell"]))
    bests = _kind_bests(ranked)
    if bests is not None:
        pairs.append((bests[1]["cell"], bests[0]["cell"]))
    target = _paper_pair(ranked, paper) if paper is not None else None
    if target is not None:
        pairs.append(target)
    if "model.attention" in ranked.columns:
        pairs += [(d["cell"], m["cell"]) for _, m, d in _attention_pairs(ranked)]
    return pairs


def ordered_knob(info: StudyInfo, runs: pd.DataFrame) -> str | None:
    """The axis of a one-axis grid whose values are numbers (an ordered knob), else None."""
    if info.is_search or len(info.axis_names) != 1 or info.axis_names[0] not in runs.columns:
        return None
    values = runs[info.axis_names[0]].dropna()
    if values.nunique() < 2 or not all(is_number(v) for v in values):
        return None
    return info.axis_names[0]


def _flipped(result: Paired) -> Paired:
    return replace(result, a=result.b, b=result.a, mean=-result.mean, t=-result.t,
                   d_z=-result.d_z, ci_low=-result.ci_high, ci_high=-result.ci_low)


def _kind_bests(ranked: pd.DataFrame) -> tuple[pd.Series, pd.Series] | None:
    """The best MemoryFormer cell and the best dense one, when the study has both."""
    memory, dense = (ranked[ranked["kind"] == k] for k in ("memoryformer", "dense"))
    if memory.empty or dense.empty:
        return None
    return memory.iloc[0], dense.iloc[0]


def _attention_pairs(ranked: pd.DataFrame) -> list[tuple[str, pd.Series, pd.Series]]:
    """(attention, best MemoryFormer, best dense) for each attention with both kinds."""
    out = []
    for attention in sorted(ranked["model.attention"].dropna().unique(), key=str):
        same = ranked[ranked["model.attention"] == attention]
        memory, dense = (same[same["kind"] == k] for k in ("memoryformer", "dense"))
        if not memory.empty and not dense.empty:
            out.append((attention, memory.iloc[0], dense.iloc[0]))
    return out


def _best_caveat(tests: Tests, ranked: pd.DataFrame) -> str:
    if len(ranked) < 2:
        return ""
    verdict = tests.pair(ranked.iloc[0]["cell"], ranked.iloc[1]["cell"])
    if verdict is not None and verdict.detected and verdict.test.mean > 0:
        return ""
    return " Lowest by mean only: not detectably better than the runner-up."


def compare(tests: Tests, other: pd.Series, best: pd.Series) -> str:
    """How far `other` trails `best`, as a paired difference of val loss over shared seeds."""
    verdict = tests.pair(best["cell"], other["cell"])
    head = f"{other['cell']} ({_ppl(other)})"
    if verdict is None:
        return f"{head}: the two share no finished seed, so no paired comparison."
    return f"{head}: {describe(verdict, 'its validation loss')}"


def describe(verdict: Verdict, subject: str) -> str:
    """`its validation loss is higher by 0.2190 nats/token (95% CI ...)` where the adjusted p
    allows a direction; else `no detectable difference at 2 seeds (smallest detectable effect:
    0.52 nats/token); its validation loss differs by +0.0120 nats/token (...)`."""
    result = verdict.test
    digits = _decimals(result.se)
    evidence = _evidence(verdict)
    caveat = (" With two seeds the t statistic has one degree of freedom: a rough guide only."
              if result.n == 2 and result.p is not None else "")
    if verdict.detected:
        direction = "higher" if result.mean > 0 else "lower"
        return (f"{subject} is {direction} by {abs(result.mean):.{digits}f} nats/token "
                f"({evidence}).{caveat}")
    return (f"{no_difference(result)}; {subject} differs by {result.mean:+.{digits}f} "
            f"nats/token ({evidence}).{caveat}")


def no_difference(result: Paired) -> str:
    """The verdict where the test cannot claim a direction, with what it could have seen."""
    if result.n < 2:
        smallest = "undefined with one seed"
    elif math.isnan(result.mde) or result.se == 0:
        smallest = "undefined without spread between seeds"
    else:
        smallest = f"{result.mde:.2g} nats/token"
    return (f"no detectable difference at {_count(result.n, 'seed')} (smallest detectable "
            f"effect: {smallest})")


def _evidence(verdict: Verdict) -> str:
    """The interval, the standardised effect and the test behind a verdict."""
    result = verdict.test
    seeds = ", ".join(map(str, result.seeds))
    if result.n < 2:
        return f"seed {seeds} alone: one seed gives no error estimate"
    if result.se == 0:
        return f"the same on every one of seeds {seeds}: no spread, so no t statistic"
    digits = _decimals(result.se)
    return (f"95% CI {result.ci_low:.{digits}f} to {result.ci_high:.{digits}f}, "
            f"d_z = {result.d_z:.3g}; paired over seeds {seeds}: t = {result.t:.3g} with "
            f"{result.n - 1} df, {_p_text(verdict)}")


def _p_text(verdict: Verdict) -> str:
    if verdict.test.p is None:
        return "no p value (scipy is not installed)"
    return (f"p = {verdict.test.p:.2g}, Holm-adjusted over "
            f"{_count(verdict.family, 'comparison')}: p = {verdict.p_adjusted:.2g}")


def trend_line(verdict: Verdict) -> str:
    """The knob's OLS slope: a direction only where its adjusted p allows one."""
    result: Trend = verdict.test
    name = result.axis.split(".")[-1]
    unit = result.unit  # the slope and its interval are stated per grid step
    if result.scale == "log2":
        per = f"per doubling of {name}"
    else:
        per = f"per unit of {name}" if unit == 1 else f"per {unit:g} of {name}"
    fit = (f"OLS of validation loss on {'log2 ' * (result.scale == 'log2')}{name} over "
           f"{result.n} finished runs")
    digits = _decimals(result.se * unit)
    if math.isnan(result.se):
        detail = "too few runs for an error estimate"
    elif result.se == 0:
        detail = "an exact fit: no spread, so no t statistic"
    else:
        detail = (f"95% CI {result.ci_low * unit:.{digits}f} to {result.ci_high * unit:.{digits}f}"
                  f"; t test with {result.n - 2} df, {_p_text(verdict)}")
    slope = result.slope * unit
    if verdict.detected:
        moves = "rises" if slope > 0 else "falls"
        head = f"validation loss {moves} by {abs(slope):.{digits}f} nats/token {per}"
    else:
        head = (f"no detectable trend at {result.n} runs; slope {slope:+.{digits}f} "
                f"nats/token {per}")
    return f"- Trend along {name}: {head} ({fit}; {detail})."


def _tests_note(family: int) -> str:
    return (f"- How sure: each comparison is a paired t test of validation loss over the seeds "
            f"both cells finished (a trend: a t test of its OLS slope), its p Holm-adjusted over "
            f"{_count(family, 'comparison')} (every test on this page that has a p value). A "
            f"direction is claimed only where the adjusted p < {ALPHA:g}; elsewhere the text "
            f"gives the smallest effect the seeds could detect (two-sided, {POWER:.0%} power).")


def kinds_compared(tests: Tests, memory: pd.Series, dense: pd.Series,
                   paired_too: bool = True, spreads: dict | None = None) -> list[str]:
    """The best MemoryFormer against the best dense cell: quality, compute, memory, speed."""
    lines = [f"- MemoryFormer against dense (best of each): {memory['cell']} against "
             f"{dense['cell']}" + ("." if paired_too else "; validation loss as above.")]
    verdict = tests.pair(dense["cell"], memory["cell"]) if paired_too else None
    if verdict is not None:
        lines.append("  - Validation loss: " + describe(verdict, "MemoryFormer's"))
    ratios = [("forward FLOPs per token (exact)", "flops_exact"),
              ("training throughput (tokens/s)", "tokens_per_s")]
    for label, key in ratios:
        m, d = memory[f"{key}.mean"], dense[f"{key}.mean"]
        if _finite(m) and _finite(d) and d:
            flagged = [c for c in (memory["cell"], dense["cell"])
                       if key == "tokens_per_s" and c in (spreads or {})]
            caveat = (f"; flagged: the seeds of {' and '.join(flagged)} differ by more than "
                      f"{SPREAD_LIMIT:g}x (see below), so this ratio is not a speed "
                      "measurement" if flagged else "")
            lines.append(f"  - {label}: {m / d:.3g}x the dense model's "
                         f"({format_stat(m, memory[f'{key}.se'], _q(key))} against "
                         f"{format_stat(d, dense[f'{key}.se'], _q(key))}){caveat}.")
    if _finite(memory["table_bytes.mean"]):
        lines.append(f"  - Hash tables: {memory['table_bytes.mean'] / 1e6:.4g} MB, which the "
                     "dense model does not have.")
    return lines


def attention_lines(tests: Tests, ranked: pd.DataFrame) -> list[str]:
    """For each attention in the grid, MemoryFormer against dense with that same attention:
    whether hash-table layers and that attention combine (Table 2's open question)."""
    lines = []
    for attention, m, d in _attention_pairs(ranked):
        verdict = tests.pair(d["cell"], m["cell"])
        text = (f"- With {attention} attention: MemoryFormer {_ppl(m)} against dense {_ppl(d)} "
                "validation perplexity")
        if verdict is not None:
            text += "; " + describe(verdict, "MemoryFormer's validation loss")
        for label, key in (("FLOPs per token", "flops_exact"), ("tokens/s", "tokens_per_s")):
            if _finite(m[f"{key}.mean"]) and _finite(d[f"{key}.mean"]) and d[f"{key}.mean"]:
                text += f" {label}: {m[f'{key}.mean'] / d[f'{key}.mean']:.3g}x dense's."
        lines.append(text)
    return lines


def paper_lines(ranked: pd.DataFrame, paper: PaperTable, tests: Tests) -> list[str]:
    """Where the paper's best row and ours agree, for a paper table with a quality column:
    claimed only where the comparison it rests on is detectable."""
    lines = [f"- This study mirrors the paper's {paper.name} ({paper.caption}); its numbers sit "
             "beside ours in the table, labelled with the paper's scale."]
    if paper.axis == "kind":
        lines += _kind_ratios(ranked, paper)
    best = _paper_best(ranked, paper)
    if best is None:
        return lines
    name = paper.axis.split(".")[-1]
    ours = ranked.iloc[0][paper.axis]
    lines.append(f"- The paper's lowest perplexity is at {name} = {best[0]} ({best[1]}); our "
                 f"lowest mean is at {name} = {ours}: {_paper_verdict(ranked, paper, tests)} "
                 f"Our scale is {_scale_gap()}.")
    return lines


def _paper_best(ranked: pd.DataFrame, paper: PaperTable) -> tuple | None:
    """(axis value, perplexity) of the paper's best row, for a perplexity-ranked table."""
    column = paper.quality
    if column is None or column.ours != "val_ppl" or paper.axis not in ranked.columns:
        return None
    return min(column.values, key=lambda row: row[1])


def _paper_pair(ranked: pd.DataFrame, paper: PaperTable) -> tuple[str, str] | None:
    """Our best cell against ours at the paper's best setting, or against our runner-up where
    the two settings are the same: the comparison the paper verdict rests on."""
    best = _paper_best(ranked, paper)
    if best is None or len(ranked) < 2:
        return None
    top = ranked.iloc[0]
    if same_value(top[paper.axis], best[0]):
        return top["cell"], ranked.iloc[1]["cell"]
    at = ranked[[same_value(v, best[0]) for v in ranked[paper.axis]]]
    return (top["cell"], at.iloc[0]["cell"]) if not at.empty else None


def _paper_verdict(ranked: pd.DataFrame, paper: PaperTable, tests: Tests) -> str:
    value = _paper_best(ranked, paper)[0]
    pair = _paper_pair(ranked, paper)
    if pair is None:
        return (f"the paper's best setting, {paper.axis.split('.')[-1]} = {value}, has no "
                "finished run here, so agreement cannot be tested.")
    verdict = tests.pair(*pair)
    if verdict is None:
        return (f"ours at the paper's best setting ({pair[1]}) shares no finished seed with "
                "our best, so agreement cannot be tested.")
    same = same_value(ranked.iloc[0][paper.axis], value)
    if verdict.detected and verdict.test.mean > 0:
        other = "the runner-up" if same else "ours at the paper's best setting"
        return (f"the best setting {'agrees' if same else 'differs'}: against {other} "
                f"({pair[1]}), {describe(verdict, 'its validation loss')}")
    against = "the runner-up" if same else "the paper's best setting"
    return (f"neither agreement nor disagreement is claimed: against {against} ({pair[1]}), "
            f"{describe(verdict, 'its validation loss')}")


def _kind_ratios(ranked: pd.DataFrame, paper: PaperTable) -> list[str]:
    """MemoryFormer over dense for each paper column that is not a quality: scale-free, so ours
    and the paper's can be set side by side."""
    best = {k: ranked[ranked["kind"] == k] for k in ("memoryformer", "dense")}
    if any(frame.empty for frame in best.values()):
        return []
    lines = []
    for column in paper.columns:
        key = f"{column.ours}.mean"
        if column.lower_is_better is not None or key not in ranked.columns:
            continue
        ours_m, ours_d = best["memoryformer"].iloc[0][key], best["dense"].iloc[0][key]
        theirs_m, theirs_d = column.get("memoryformer"), column.get("dense")
        if _finite(ours_m) and ours_d and theirs_m is not None and theirs_d:
            name = catalogue(())[column.ours].header
            lines.append(f"  - {name}, MemoryFormer over dense: {ours_m / ours_d:.1%} here, "
                         f"{theirs_m / theirs_d:.1%} in the paper.")
    if lines:
        lines.append("  - Attention (2 s d per token) is the same in both kinds and grows with "
                     "the context s, so ratios with attention depend on it: ours trains at a "
                     "far shorter context than the paper's 2048.")
    return lines


def chance_lines(runs: pd.DataFrame) -> list[str]:
    """One line per accuracy: its chance level, and the cells not above it."""
    lines = []
    for key in [k for k in runs.columns if is_accuracy(k) and runs[k].notna().any()]:
        level = runs[chance_key(key)].mean() if chance_key(key) in runs else math.nan
        if not math.isfinite(level):
            continue
        name = catalogue(runs.columns)[key].header
        done = runs[runs["status"] == FINISHED].groupby("cell", sort=False)[key]
        below = [cell for cell, values in done if above_chance(
            values.mean(), standard_error(values.dropna().to_numpy(float)), level) is False]
        verdict = ("not above chance (mean - "
                   f"{MARGIN:g} se ≤ chance) in " + ", ".join(below) if below
                   else "above chance in every cell")
        lines.append(f"- {name}: chance {level:.3g}; {verdict}.")
    if lines:
        lines.append(f"- Chance levels: {source_text()}.")
    return lines


def provenance_lines(raw: pd.DataFrame, runs: pd.DataFrame, info: StudyInfo,
                     tracking_uri: str) -> list[str]:
    """Where, when and with what the runs ran (raw: the runs table with its tags)."""
    trials = raw[raw["run_id"].isin(runs["run_id"])]
    starts, ends = trials["start_time"].dropna(), trials["end_time"].dropna()
    span = (f"{_when(starts.min())} to {_when(ends.max() if len(ends) else starts.max())}"
            if len(starts) else "unknown")
    lines = [f"- Tracking store: `{tracking_uri}`, experiment `{info.name}`, parent run "
             f"`{info.parent_run_id or 'none found'}`.",
             f"- Trial runs: {len(trials)}, from {span} (UTC).",
             f"- Seeds: {', '.join(map(str, info.seeds)) or 'unknown'}; steps: "
             f"{info.steps or 'unknown'}; validation every {info.val_every or 'unknown'} steps."]
    for label, tag in PROVENANCE_TAGS:
        lines.append(f"- {label}: {_distinct(trials, tag_column(tag))}")
    prefix = tag_column("version.")
    versions = sorted(c for c in trials.columns if c.startswith(prefix))
    if versions:
        lines.append("- versions: " + "; ".join(
            f"{c.removeprefix(prefix)} {_distinct(trials, c)}" for c in versions))
    return lines


def _distinct(frame: pd.DataFrame, column: str) -> str:
    """`a` when every run agrees, else `a (3 runs), b (1 run)`; `not recorded` when absent."""
    if column not in frame.columns or frame[column].isna().all():
        return "not recorded"
    counts = Counter(str(v) for v in frame[column].dropna())
    missing = int(frame[column].isna().sum())
    if len(counts) == 1 and not missing:
        return f"`{next(iter(counts))}`"
    text = ", ".join(f"`{v}` ({n} run{'s' * (n > 1)})" for v, n in counts.most_common())
    return text + (f", not recorded ({missing})" if missing else "")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _when(stamp) -> str:
    return pd.Timestamp(stamp).strftime("%Y-%m-%d %H:%M")


def _ppl(cell: pd.Series) -> str:
    return format_stat(cell["val_ppl.mean"], cell["val_ppl.se"], _PPL)


def _decimals(se: float) -> int:
    """Decimals that show the standard error to two significant digits (4 without one)."""
    if math.isnan(se) or se == 0:
        return 4
    return max(0, 1 - math.floor(math.log10(se)))


def _q(key: str):
    return next(q for q in STANDARD if q.key == key)


def _finite(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _scale_gap() -> str:
    return "far below the paper's: compare directions, not values"


def within_conditions(runs: pd.DataFrame) -> list[str]:
    """MemoryFormer against dense inside each condition of a tuned comparison (cells `arm=A@C`),
    where only arms of one condition are comparable (a byte-level and a BPE perplexity are not):
    paired over seeds, Holm-adjusted over the conditions, a direction only where significant."""
    done = runs[runs["status"] == FINISHED]
    pairs = []
    for condition, part in done.groupby(done["cell"].map(_condition)):
        kinds = part.groupby("kind")["cell"].unique()
        if condition and {"dense", "memoryformer"} <= set(kinds.index):
            pairs += [(condition, result) for dense in kinds["dense"]
                      for memory in kinds["memoryformer"]
                      if (result := paired(runs, dense, memory)) is not None]
    if not pairs:
        return []
    family = sum(r.p is not None for _, r in pairs)
    lines = ["MemoryFormer against dense within each condition (paired over seeds; Holm-adjusted "
             f"over {len(pairs)} comparisons; a negative difference: MemoryFormer lower):"]
    for (condition, r), p_adj in zip(pairs, holm([r.p for _, r in pairs]), strict=True):
        verdict = Verdict(r, p_adj, family)
        outcome = (("MemoryFormer better" if r.mean < 0 else "dense better")
                   if verdict.detected else no_difference(r))
        lines.append(f"- {condition}: {r.b} against {r.a}: {r.mean:+.4f} nats/token (95% CI "
                     f"{r.ci_low:+.4f} to {r.ci_high:+.4f}, d_z = {r.d_z:.2f}, t = {r.t:.2f} with "
                     f"{r.n - 1} df, p = {_p_value(r.p)}, adjusted p = {_p_value(p_adj)}): "
                     f"{outcome}")
    return lines


def _condition(cell: str) -> str:
    """`arm=memoryformer@byte` -> `byte`; a cell without a condition -> ''."""
    label = cell.partition("=")[2] if cell.startswith("arm=") else ""
    return label.partition("@")[2]


def _p_value(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.2g}"
