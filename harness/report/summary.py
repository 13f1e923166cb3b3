"""index.md: what the study is, what won and how sure that is, the table and figures, how the
FLOPs columns are counted, and where the runs come from."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import pandas as pd

from harness.report.cells import StudyInfo
from harness.report.paper import PaperTable
from harness.report.quantities import STANDARD, catalogue
from harness.report.reader import tag_column
from harness.report.stats import Paired, paired, pareto_front
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
                   files: dict[str, str]) -> str:
    """runs: `cells.per_run`; cells: `cells.aggregate` with val_ppl, val_loss, flops_exact,
    flops_paper, table_bytes and tokens_per_s; provenance: `provenance_lines` output."""
    parts = [f"# Study report: {info.name}", ""]
    if info.description.strip():
        parts += ["> " + " ".join(info.description.split()), ""]
    parts += [design(info, runs), "", "## What won", "", *outcome(runs, cells, paper), ""]
    parts += ["## Table", "", to_markdown(table),
              "Also as " + ", ".join(f"[{k}]({v})" for k, v in files.items()) + ".", ""]
    if figures:
        parts += ["## Figures", ""]
        for figure in figures:
            parts += [f"![{figure.caption}]({figure.file})", "", f"*{figure.caption}*", ""]
    parts += ["## FLOPs: exact count against the paper's approximation", "",
              flops_note(cells), "", "## Provenance", "", *provenance, ""]
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
    budget = (f"{info.steps} steps each, validation every {info.val_every}"
              if info.steps else "steps unknown (no parent run)")
    counts = Counter(runs["status"])
    status = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    objectives = f"; objectives {info.objectives}" if info.objectives else ""
    return (f"**Design.** {space}; seeds {seeds}; {budget}{objectives}. "
            f"{runs['cell'].nunique()} cells, {len(runs)} trial runs ({status or 'none'}).")


def outcome(runs: pd.DataFrame, cells: pd.DataFrame, paper: PaperTable | None) -> list[str]:
    ranked = cells.dropna(subset=["val_ppl.mean"]).sort_values("val_ppl.mean")
    if ranked.empty:
        return ["No cell has a finished run with a validation loss yet: nothing to rank."]
    best = ranked.iloc[0]
    n = int(best["val_ppl.n"])
    spread = f"mean ± se over {n} seeds" if n > 1 else "one seed: no error estimate"
    lines = [f"- **Best cell: {best['cell']}**, validation perplexity {_ppl(best)} "
             f"({spread}); lower is better."]
    if len(ranked) > 1:
        lines.append("- Against the runner-up: " + compare(runs, ranked.iloc[1], best))
    memory, dense = (ranked[ranked["kind"] == k] for k in ("memoryformer", "dense"))
    if not memory.empty and not dense.empty:
        top_two = set(ranked["cell"].iloc[:2])
        repeated = {memory.iloc[0]["cell"], dense.iloc[0]["cell"]} == top_two
        lines += kinds_compared(runs, memory.iloc[0], dense.iloc[0], paired_too=not repeated)
    front = ranked[pareto_front(ranked["flops_exact.mean"], ranked["val_ppl.mean"])]
    if len(ranked) > 2 and not front.empty:
        lines.append("- Pareto front of perplexity against FLOPs per token: "
                     + ", ".join(front.sort_values("flops_exact.mean")["cell"]) + ".")
    if paper is not None:
        lines += paper_lines(ranked, paper)
    if "model.attention" in ranked.columns:
        lines += attention_lines(runs, ranked)
    failed = cells[cells["n_finished"] < cells["n_runs"]]
    if not failed.empty:
        lines.append(f"- {_count(len(failed), 'cell')} with runs that did not finish: the "
                     "table's footnotes say which and why.")
    return lines


def compare(runs: pd.DataFrame, other: pd.Series, best: pd.Series) -> str:
    """How far `other` trails `best`, as a paired difference of val loss over shared seeds."""
    result = paired(runs, best["cell"], other["cell"])
    head = f"{other['cell']} ({_ppl(other)})"
    if result is None:
        return f"{head}; the two share no finished seed, so no paired comparison."
    return f"{head} has a validation loss {describe(result)}"


def describe(result: Paired) -> str:
    """`higher by 0.145 ± 0.001 nats/token (paired over seeds 0, 1: t = 180 with 1 df, p = ...)`"""
    direction = "higher" if result.mean > 0 else "lower" if result.mean < 0 else "equal"
    seeds = ", ".join(map(str, result.seeds))
    if result.n < 2:
        return (f"{direction} by {abs(result.mean):.4f} nats/token on seed {seeds} alone: one "
                "seed gives no error estimate, so how sure this is cannot be said.")
    if result.se == 0:
        return (f"{direction} by {abs(result.mean):.4f} nats/token on every one of seeds "
                f"{seeds}: no spread between seeds, so no t statistic.")
    size = _pm(abs(result.mean), result.se)
    p = (f", two-sided p = {result.p:.2g}" if result.p is not None
         else ", no p-value (scipy is not installed)")
    caveat = (" With two seeds the t statistic has one degree of freedom: a rough guide only."
              if result.n == 2 else "")
    return (f"{direction} by {size} nats/token (paired over seeds {seeds}: mean difference ± its "
            f"standard error, t = {result.t:.3g} with {result.n - 1} df{p}).{caveat}")


def kinds_compared(runs: pd.DataFrame, memory: pd.Series, dense: pd.Series,
                   paired_too: bool = True) -> list[str]:
    """The best MemoryFormer against the best dense cell: quality, compute, memory, speed."""
    lines = [f"- MemoryFormer against dense (best of each): {memory['cell']} against "
             f"{dense['cell']}" + ("." if paired_too else "; validation loss as above.")]
    result = paired(runs, dense["cell"], memory["cell"]) if paired_too else None
    if result is not None:
        lines.append(f"  - Validation loss: MemoryFormer's is {describe(result)}")
    ratios = [("forward FLOPs per token (exact)", "flops_exact"),
              ("training throughput (tokens/s)", "tokens_per_s")]
    for label, key in ratios:
        m, d = memory[f"{key}.mean"], dense[f"{key}.mean"]
        if _finite(m) and _finite(d) and d:
            lines.append(f"  - {label}: {m / d:.3g}x the dense model's "
                         f"({format_stat(m, memory[f'{key}.se'], _q(key))} against "
                         f"{format_stat(d, dense[f'{key}.se'], _q(key))}).")
    if _finite(memory["table_bytes.mean"]):
        lines.append(f"  - Hash tables: {memory['table_bytes.mean'] / 1e6:.4g} MB, which the "
                     "dense model does not have.")
    return lines


def attention_lines(runs: pd.DataFrame, ranked: pd.DataFrame) -> list[str]:
    """For each attention in the grid, MemoryFormer against dense with that same attention:
    whether hash-table layers and that attention combine (Table 2's open question)."""
    lines = []
    for attention in sorted(ranked["model.attention"].dropna().unique(), key=str):
        same = ranked[ranked["model.attention"] == attention]
        memory, dense = (same[same["kind"] == k] for k in ("memoryformer", "dense"))
        if memory.empty or dense.empty:
            continue
        m, d = memory.iloc[0], dense.iloc[0]
        result = paired(runs, d["cell"], m["cell"])
        text = (f"- With {attention} attention: MemoryFormer {_ppl(m)} against dense {_ppl(d)} "
                "validation perplexity")
        if result is not None:
            text += f"; MemoryFormer's validation loss is {describe(result)}"
        for label, key in (("FLOPs per token", "flops_exact"), ("tokens/s", "tokens_per_s")):
            if _finite(m[f"{key}.mean"]) and _finite(d[f"{key}.mean"]) and d[f"{key}.mean"]:
                text += f" {label}: {m[f'{key}.mean'] / d[f'{key}.mean']:.3g}x dense's."
        lines.append(text)
    return lines


def paper_lines(ranked: pd.DataFrame, paper: PaperTable) -> list[str]:
    """Where the paper's best row and ours agree, for a paper table with a quality column."""
    lines = [f"- This study mirrors the paper's {paper.name} ({paper.caption}); its numbers sit "
             "beside ours in the table, labelled with the paper's scale."]
    if paper.axis == "kind":
        lines += _kind_ratios(ranked, paper)
    column = paper.quality
    if column is None or column.ours != "val_ppl":
        return lines
    axis = paper.axis
    rows = [(value, number) for value, number in column.values]
    best_value, best_number = min(rows, key=lambda r: r[1])
    ours = ranked.iloc[0][axis] if axis in ranked.columns else None
    agree = "agrees" if ours is not None and column.get(ours) == best_number else "differs"
    lines.append(f"- The paper's lowest perplexity is at {axis.split('.')[-1]} = {best_value} "
                 f"({best_number}); ours is at {axis.split('.')[-1]} = {ours}: the best setting "
                 f"{agree} (at a scale far below the paper's: compare directions, not values).")
    return lines


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


def flops_note(cells: pd.DataFrame) -> str:
    text = ("FLOPs/token (exact) is the harness's forward count of matrix multiply-adds per "
            "token (one multiply-add = 1 FLOP, as fvcore and the paper count): linear layers, the "
            "memory layers' weighted row sums (Eq. 11), attention's QK^T and AV over the full "
            "context, and the LM head. FLOPs/token (paper approx.) applies the paper's formula "
            "(SPEC section 5) to each run's recorded params: n_layer x (block + 2 s d) + d V, "
            "with block = 6 K d for a MemoryFormer and (4 + 2 r) d^2 for a dense model (12 d^2 "
            "at MLP ratio r = 4, which is exact). The approximation treats all six memory "
            "layers of a block as d wide with K tables; exactly, Q, K and V cost 3 K d, the "
            "Memory Block's first layer K (tau + e) K and its second K d, so the exact count is "
            "K (4 d + (tau + e) K): 5.25 K d at tau = 8, e = 2, i.e. 12.5% below 6 K d.")
    memory = cells[(cells["kind"] == "memoryformer") & cells["flops_exact.mean"].notna()
                   & cells["flops_paper.mean"].notna()]
    if not memory.empty:
        row = memory.iloc[0]
        exact, approx = row["flops_exact.mean"], row["flops_paper.mean"]
        text += (f" Here, for {row['cell']}: exact {exact:,.0f} against approximately "
                 f"{approx:,.0f} FLOPs per token ({exact / approx:.3f}x); attention and the LM "
                 "head, counted alike in both, dilute the gap at short contexts.")
    return text


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


def _pm(mean: float, se: float) -> str:
    if math.isnan(se) or se == 0:
        return f"{mean:.4f}"
    decimals = max(0, 1 - math.floor(math.log10(se)))
    return f"{mean:.{decimals}f} ± {se:.{decimals}f}"


def _q(key: str):
    return next(q for q in STANDARD if q.key == key)


def _finite(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _scale_gap() -> str:
    return "far below the paper's: compare directions, not values"

