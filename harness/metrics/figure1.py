"""The paper's Figure 1: one block's forward FLOPs against the hidden size d, a dense
(Pythia-style) block against a MemoryFormer block, at s = 2048 tokens, from the analytic counts of
harness/models/cost.py (equal to fvcore's, tested). `harness flops --figure DIR` writes
figure1.png and figure1.csv.

Both kinds keep the shapes of pythia-70m and memoryformer-tiny, widened: heads of 64 dims; the
MemoryFormer at tau = 8 (K = d / 8 tables of 2^8 buckets, expansion bits 2).
"""

from __future__ import annotations

from pathlib import Path

from harness.models import preset
from harness.models.cost import block_cost

WIDTHS = (256, 512, 768, 1024, 1536, 2048, 3072, 4096)
SEQ_LEN = 2048
KINDS = {"dense": "pythia-70m", "memoryformer": "memoryformer-tiny"}
COLUMNS = ("d_model", "kind", "attention_gflops", "non_attention_gflops", "total_gflops")


def rows(widths: tuple[int, ...] = WIDTHS, seq_len: int = SEQ_LEN) -> list[dict]:
    """GFLOPs of one block per sequence of `seq_len` tokens (1 multiply-add = 1 FLOP)."""
    out = []
    for d in widths:
        for kind, name in KINDS.items():
            config = preset(name).replace(d_model=d, n_head=d // 64)
            cost = block_cost(config, seq_len)
            out.append({"d_model": d, "kind": kind, "attention_gflops": cost.attention / 1e9,
                        "non_attention_gflops": cost.non_attention / 1e9,
                        "total_gflops": cost.total / 1e9})
    return out


def to_csv(table: list[dict]) -> str:
    lines = [",".join(COLUMNS)]
    lines += [",".join(f"{row[c]:.6g}" if isinstance(row[c], float) else str(row[c])
                       for c in COLUMNS) for row in table]
    return "\n".join(lines) + "\n"


def figure(table: list[dict], seq_len: int = SEQ_LEN):
    import seaborn as sns
    from matplotlib.figure import Figure

    styles = {"dense": ("C0", "s", "dense (Pythia) block"),
              "memoryformer": ("C1", "o", "MemoryFormer block")}
    with sns.axes_style("whitegrid"):
        fig = Figure(figsize=(7.5, 5), layout="constrained")
        ax = fig.subplots()
        for kind, (color, marker, label) in styles.items():
            mine = [row for row in table if row["kind"] == kind]
            widths = [row["d_model"] for row in mine]
            ax.plot(widths, [row["total_gflops"] for row in mine], color=color, marker=marker,
                    label=f"{label}: total")
            ax.plot(widths, [row["non_attention_gflops"] for row in mine], color=color,
                    marker=marker, linestyle="--", label=f"{label}: without attention")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(WIDTHS, [str(d) for d in WIDTHS])
        ax.set_xlabel("hidden size d")
        ax.set_ylabel(f"GFLOPs per block, one sequence of {seq_len} tokens")
        ax.legend(fontsize=8)
        fig.suptitle("FLOPs of one block against width (the paper's Figure 1; "
                     "harness/models/cost.py)")
    return fig


def write(folder: Path, dpi: int = 120) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    table = rows()
    csv, png = folder / "figure1.csv", folder / "figure1.png"
    csv.write_text(to_csv(table))
    figure(table).savefig(png, dpi=dpi)
    return [png, csv]
