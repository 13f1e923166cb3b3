"""Forward (and forward+backward) time of MemoryLayer against nn.Linear at matched shapes.

    python benchmarks/layer_forward.py [--tokens 4096] [--widths 512 768 1024] [--repeats 20]

Timings on a shared CPU swing from run to run, so both layers are timed one after the other in
the same process and compared as a ratio of medians (>1 means the memory layer is faster).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from harness.models import MemoryLayer


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up: allocator and kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def step(layer: nn.Module, x: torch.Tensor, backward: bool):
    def run():
        if backward:
            layer.zero_grad(set_to_none=True)
            layer(x).sum().backward()
        else:
            with torch.no_grad():
                layer(x)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--widths", type=int, nargs="+", default=[512, 768, 1024])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.tokens} tokens, "
          f"fp32, tau = 8")
    print(f"{'shape':>11} {'pass':>8} {'linear ms':>10} {'memory ms':>10} {'speed-up':>9}")
    for width in args.widths:
        x = torch.randn(args.tokens, width, requires_grad=True)
        layers = {"linear": nn.Linear(width, width, bias=False),
                  "memory": MemoryLayer(width, width)}
        for backward in (False, True):
            ms = {name: median_ms(step(layer, x, backward), args.repeats)
                  for name, layer in layers.items()}
            speedup = ms["linear"] / ms["memory"]
            print(f"{width:>5}x{width:<5} {'fwd+bwd' if backward else 'fwd':>8} "
                  f"{ms['linear']:>10.2f} {ms['memory']:>10.2f} {speedup:>8.2f}x")


if __name__ == "__main__":
    main()
