"""The paper's own numbers (Ding et al., NeurIPS 2024, Tables 1-6), as data, and which study
mirrors which table.

The paper trained at 2048 tokens of context on the Pile; our studies train CPU-sized models on
Shakespeare. The numbers sit beside ours to compare trends and ratios, never absolute values:
every column label says the paper's scale. Each number is kept as the paper prints it and
converted to our column's unit where it is shown (`unit`): the paper counts FLOPs per sequence
of 2048 tokens in G, ours per token, so 6.4 GFLOPs per sequence shows as 3.1M FLOPs/token.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.report.chance import PAPER_SUITE_CHANCE as SIX_TASKS

Value = str | float | int | bool | None


@dataclass(frozen=True)
class PaperColumn:
    label: str  # names the source and scale, e.g. "paper ppl (MF-tiny, 2048 ctx)"
    values: tuple[tuple[Value, float], ...]  # (axis value, number) in the paper's row order
    digits: int  # decimals shown
    ours: str  # key of our quantity it sits beside (harness.report.quantities)
    lower_is_better: bool | None = None  # None: not a quality measure
    unit: float = 1.0  # the paper's number x unit = ours' unit (FLOPs per token, bytes, ...)
    converted: str = ""  # how, in words, when unit is not 1
    chance: float | None = None  # an accuracy's chance level over the paper's tasks

    def base(self, value: Value) -> float | None:
        """The paper's number for `value` in our quantity's unit."""
        number = self.get(value)
        return None if number is None else number * self.unit

    def get(self, value: Value) -> float | None:
        for key, number in self.values:
            if same_value(key, value):
                return number
        return None


@dataclass(frozen=True)
class PaperTable:
    name: str  # "Table 3"
    caption: str
    axis: str  # the study axis it matches ("kind" matches the model kind of a preset axis)
    kinds: tuple[str, ...]  # model kinds whose cells it may describe
    columns: tuple[PaperColumn, ...]

    @property
    def quality(self) -> PaperColumn | None:
        """The column that ranks the rows (perplexity or accuracy), if any."""
        return next((c for c in self.columns if c.lower_is_better is not None), None)


TINY = "MF-tiny, 2048 ctx"
BASE = "Pythia-410M / MF-base, 2048 ctx"
PAPER_SEQ = 2048  # the paper's context: its FLOPs are per sequence of this many tokens
PER_TOKEN = 1e9 / PAPER_SEQ  # its GFLOPs per sequence -> FLOPs per token
PER_TOKEN_TEXT = "the paper's GFLOPs per 2048-token sequence x 1e9 / 2048"
MEGABYTES = 1e6  # its MB -> bytes
KIND_ATTENTION = "kind/attention"  # Table 2's rows: a model kind with an attention
PAIR = "Pythia-70M / MF-tiny, 2048 ctx"

TABLE_1 = PaperTable(
    name="Table 1", caption="dense Pythia-70M against MemoryFormer-tiny: FLOPs per block at "
    "s = 2048 and zero-shot accuracy averaged over six tasks",
    axis="kind", kinds=("dense", "memoryformer"),
    columns=(
        PaperColumn(f"paper block FLOPs/token w/o attention ({PAIR})",
                    (("dense", 6.4), ("memoryformer", 0.4)), 1, "block_flops_no_attn",
                    unit=PER_TOKEN, converted=PER_TOKEN_TEXT),
        PaperColumn(f"paper block FLOPs/token ({PAIR})",
                    (("dense", 10.7), ("memoryformer", 4.7)), 1, "block_flops",
                    unit=PER_TOKEN, converted=PER_TOKEN_TEXT),
        PaperColumn(f"paper avg zero-shot acc ({PAIR})",
                    (("dense", 0.375), ("memoryformer", 0.404)), 3, "eval_mean_acc",
                    lower_is_better=False, chance=SIX_TASKS),
    ),
)
TABLE_2 = PaperTable(
    name="Table 2", caption="efficient attention swapped into Pythia-410M, against it and "
    "MemoryFormer-base: FLOPs per block at s = 2048 and zero-shot accuracy averaged over six "
    "tasks (MemoryFormer with an efficient attention is not in the paper)",
    axis=KIND_ATTENTION, kinds=("dense", "memoryformer"),
    columns=(
        PaperColumn(f"paper block FLOPs/token ({BASE})",
                    (("dense/linformer", 26.1), ("dense/cosformer", 30.0),
                     ("dense/performer", 26.7), ("dense/softmax", 34.4),
                     ("memoryformer/softmax", 10.2)), 1, "block_flops",
                    unit=PER_TOKEN, converted=PER_TOKEN_TEXT),
        PaperColumn(f"paper avg zero-shot acc ({BASE})",
                    (("dense/linformer", 0.398), ("dense/cosformer", 0.405),
                     ("dense/performer", 0.418), ("dense/softmax", 0.435),
                     ("memoryformer/softmax", 0.458)), 3, "eval_mean_acc",
                    lower_is_better=False, chance=SIX_TASKS),
    ),
)
TABLE_3 = PaperTable(
    name="Table 3", caption="hash width tau against table count K on MemoryFormer-tiny (K = d / "
    "tau; tau = 10 uses K = 51, d = 510); FLOPs and memory of the Q layer",
    axis="model.chunk_size", kinds=("memoryformer",),
    columns=(
        PaperColumn(f"paper ppl ({TINY})", ((4, 19.01), (8, 18.82), (10, 18.67)), 2, "val_ppl",
                    lower_is_better=True),
        PaperColumn(f"paper Q-layer FLOPs/token ({TINY})",
                    ((4, 0.14), (8, 0.07), (10, 0.06)), 2, "q_flops",
                    unit=PER_TOKEN, converted=PER_TOKEN_TEXT),
        PaperColumn(f"paper Q-layer table MB ({TINY}, fp16)",
                    ((4, 2.1), (8, 16.8), (10, 53.5)), 1, "q_table_bytes",
                    unit=MEGABYTES),
    ),
)
TABLE_4 = PaperTable(
    name="Table 4", caption="peak learning rate of MemoryFormer-tiny (Pythia-70M trains at 1e-3)",
    axis="optim.lr", kinds=("memoryformer",),
    columns=(PaperColumn(f"paper ppl ({TINY})",
                         ((1e-3, 19.86), (2e-3, 19.07), (3e-3, 18.82), (4e-3, 18.84)), 2,
                         "val_ppl", lower_is_better=True),),
)
TABLE_5 = PaperTable(
    name="Table 5", caption="expansion bits e of the Memory Block on MemoryFormer-tiny",
    axis="model.expansion_bits", kinds=("memoryformer",),
    columns=(
        PaperColumn(f"paper ppl ({TINY})", ((0, 19.89), (1, 19.26), (2, 18.82), (3, 18.54)), 2,
                    "val_ppl", lower_is_better=True),
        PaperColumn(f"paper Memory Block MB ({TINY}, fp16)",
                    ((0, 33.6), (1, 52.4), (2, 88.1), (3, 157.3)), 1, "ffn_table_bytes",
                    unit=MEGABYTES),
    ),
)
TABLE_6 = PaperTable(
    name="Table 6", caption="activation between the two memory layers of the Memory Block",
    axis="model.ffn_activation", kinds=("memoryformer",),
    columns=(PaperColumn("paper avg zero-shot acc (MF, six tasks)",
                         (("none", 0.404), ("gelu", 0.402)), 3, "eval_mean_acc",
                         lower_is_better=False, chance=SIX_TASKS),),
)
TABLES = (TABLE_1, TABLE_2, TABLE_3, TABLE_4, TABLE_5, TABLE_6)


def paper_key(cell: Any, table: PaperTable) -> Value:
    """The value of a study cell (a mapping of its axes, `kind` included) that `table` keys its
    rows by."""
    if table.axis == "kind":
        return cell["kind"]
    if table.axis == KIND_ATTENTION:
        return f"{cell['kind']}/{cell['model.attention']}"
    return cell[table.axis]


def same_value(a: Any, b: Any) -> bool:
    """Axis values as recorded (1e-3 may come back as 0.001 or "0.001") against the paper's."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-9)
    return str(a) == str(b)


def match_table(axes: Sequence[str], kinds: Sequence[str]) -> PaperTable | None:
    """The paper table a grid mirrors, or None.

    A `preset` axis mirrors Table 1 (dense against MemoryFormer), and with a `model.attention`
    axis beside it Table 2; the other tables vary one knob of a MemoryFormer, so every cell must
    be one.
    """
    if sorted(axes) == ["model.attention", "preset"]:
        return TABLE_2 if set(kinds) <= set(TABLE_2.kinds) else None
    if len(axes) != 1:
        return None
    axis = "kind" if axes[0] == "preset" else axes[0]
    for table in TABLES:
        if table.axis != axis or table is TABLE_2:
            continue
        # Table 1 is a comparison: it needs both kinds, or it would label two presets alike.
        fits = set(kinds) == set(table.kinds) if axis == "kind" else set(kinds) <= set(table.kinds)
        if fits:
            return table
    return None
