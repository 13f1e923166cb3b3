"""README's generated blocks, written from the committed reports by `harness report --readme`:

- headline: the tuned dense-against-MemoryFormer comparison at equal FLOPs and at equal time,
  quoted from its two reports with what each held fixed and what it did not (headline.py);
- results: each study report's provenance and its own "What won" lines, quoted, so every number
  traces to a report that its committed data rebuilds (tests/test_reports_committed.py);
- speed: the committed `harness bench` outputs in reports/bench/, verbatim (each names the CPU,
  instruction sets and threads it ran on).

A test fails when README's blocks and the reports disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from harness.report.headline import headline_lines, section

_BEGIN = "<!-- {name}: written by `harness report --readme` from {source}; edit those, not this -->"
_END = "<!-- end of {name} -->"
SOURCES = {"headline": "reports/fair-dense-vs-memory-*/", "reference results": "reports/*/index.md",
           "speed": "reports/bench/*.txt"}
# provenance.txt: the commit, time and commands of the bench files below it
BENCH_FILES = ("provenance.txt", "harness-bench.txt", "harness-bench-model.txt",
               "harness-bench-attention.txt", "allocator-gap.txt")
# the paper's table or question each study mirrors, in the order the block lists them
MIRRORS = {
    "fair-dense-vs-memory-flops": "dense against MemoryFormer at equal training FLOPs, tuned",
    "fair-dense-vs-memory-seconds": "dense against MemoryFormer at equal time, tuned",
    "matched-baselines": "dense at equal parameters, equal FLOPs, or with hashed bigrams",
    "dense-vs-memory": "Table 1", "efficient-attention": "Table 2",
    "efficient-attention-long": "Table 2 at context 1024-2048", "bucket-bits": "Table 3",
    "learning-rate": "Table 4", "expansion-bits": "Table 5", "ffn-activation": "Table 6",
    "knob-grid": "tables x bucket bits x chunk size", "weighting-temperature":
    "the weighting (p or ||z||_1 p) and its temperature", "multi-objective":
    "the Pareto front of loss, FLOPs and table bytes", "tune-lr-temperature":
    "learning rate and temperature, tuned", "scaling": "loss against training FLOPs per family",
    "float-order": "how far rounding order alone moves a run", "quickstart": "the quickstart",
}


@dataclass(frozen=True)
class ReportFacts:
    name: str
    commits: str  # the Provenance line's value: one commit, or several with their run counts
    dirty: str
    seeds: str
    runs: str  # "Trial runs: N, from ... to ... (UTC)"
    # the first two "What won" bullets, as the report has them; for a comparison within
    # conditions (tokenizers), its per-condition verdicts: its best cells may be of two conditions
    won: tuple[str, ...]


def markers(name: str) -> tuple[str, str]:
    return _BEGIN.format(name=name, source=SOURCES[name]), _END.format(name=name)


def blocks(reports: Path) -> dict[str, str]:
    """Each generated block, markers included."""
    return {"headline": headline_block(reports), "reference results": reference_block(reports),
            "speed": speed_block(reports)}


def headline_block(reports: Path) -> str:
    begin, end = markers("headline")
    return "\n".join([begin, "", *headline_lines(reports), end])


def speed_block(reports: Path) -> str:
    begin, end = markers("speed")
    lines = [begin, ""]
    for name in BENCH_FILES:
        path = reports / "bench" / name
        if path.is_file():
            lines += [f"[reports/bench/{name}](reports/bench/{name}):", "", "```",
                      path.read_text().rstrip("\n"), "```", ""]
    return "\n".join([*lines, end])


def reference_block(reports: Path) -> str:
    facts = [_facts(path) for path in _study_reports(reports)]
    order = {name: i for i, name in enumerate(MIRRORS)}
    facts.sort(key=lambda f: (order.get(f.name, len(order)), f.name))
    begin, end = markers("reference results")
    lines = [begin, "", "| study | mirrors | commit | seeds | trial runs |",
             "|---|---|---|---|---|"]
    for f in facts:
        lines.append(f"| [{f.name}](reports/{f.name}/index.md) | {MIRRORS.get(f.name, '')} | "
                     f"{f.commits}{'' if f.dirty == 'false' else ' (dirty: ' + f.dirty + ')'} | "
                     f"{f.seeds} | {f.runs} |")
    lines.append("")
    for f in facts:
        lines += [f"**{f.name}** (quoted from its report):", "", *f.won, ""]
    return "\n".join([*lines, end])


def update_readme(readme: Path, reports: Path) -> bool:
    """Write every block into README between its markers; True when that changed the file."""
    text = readme.read_text()
    new = text
    for name, block in blocks(reports).items():
        new = _replace(new, name, block)
    if new != text:
        readme.write_text(new)
    return new != text


def readme_block(readme: Path, name: str) -> str:
    """The block `name` README holds now (markers included), or "" when it has none."""
    text = readme.read_text()
    begin, end = markers(name)
    start, stop = text.find(begin), text.find(end)
    return text[start:stop + len(end)] if 0 <= start < stop else ""


def _replace(text: str, name: str, block: str) -> str:
    begin, end = markers(name)
    start, stop = text.find(begin), text.find(end)
    if not 0 <= start < stop:
        raise ValueError(f"README has no {name} block: add the lines {begin!r} and {end!r}")
    return text[:start] + block + text[stop + len(end):]


def _study_reports(reports: Path) -> list[Path]:
    """Report folders of studies (index.md a study report), those with their data only."""
    return sorted(path.parent for path in reports.glob("*/index.md")
                  if (path.parent / "data" / "runs.csv").is_file()
                  and path.read_text().startswith("# Study report:"))


def _facts(folder: Path) -> ReportFacts:
    text = (folder / "index.md").read_text()
    return ReportFacts(
        name=folder.name,
        commits=re.sub(r"`([0-9a-f]{10})[0-9a-f]{30}`", r"`\1`", _provenance(text, "git commit")),
        dirty=_provenance(text, "git dirty").strip("`"),
        seeds=_line(text, r"^- Seeds: ([^;\n]*)"),
        runs=_line(text, r"^- Trial runs: (.*)$").rstrip("."),
        # a tuned comparison's verdicts stay within a condition; a scaling study's point is
        # its frontier, not which (size, budget) cell came out best
        won=tuple(_bullets(text, "Within each condition") or _bullets(text, "Scaling")
                  or _bullets(text, "What won")[:2]))


def _provenance(text: str, key: str) -> str:
    return _line(text, rf"^- {re.escape(key)}: (.*)$")


def _line(text: str, pattern: str) -> str:
    match = re.search(pattern, text, flags=re.MULTILINE)
    return match.group(1).strip() if match else "unknown"


def _bullets(text: str, title: str) -> list[str]:
    """The bullets of one `## title` section."""
    return [line for line in section(text, title) if line.startswith("- ")]
