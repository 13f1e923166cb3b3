"""What glibc's allocator policy is worth to a script that imports only MemoryLayer.

    python benchmarks/allocator_gap.py [--widths 512 1024] [--rounds 3]

Each round starts three fresh processes in turn (glibc's defaults; harness.allocator's
keep_freed_memory(); the GLIBC_TUNABLES equivalent), each timing MemoryLayer forward+backward
on 4096 tokens, median of 20 steps after 3 warm-up steps, beside bf16 nn.Linear in the same
process (the fastest dense layer on the project's CPU). Processes, not one: the policy is
process-wide and is set before the first allocation in the tunables case.
"""

import argparse
import os
import subprocess
import sys

TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1073741824"
VARIANTS = {"glibc defaults": ([], {}), "keep_freed_memory()": (["--keep"], {}),
            "GLIBC_TUNABLES": ([], {"GLIBC_TUNABLES": TUNABLES})}


def step_ms(width: int, keep: bool) -> tuple[float, float]:
    """(memory layer ms, bf16 nn.Linear ms): medians of fwd+bwd steps in this process."""
    import statistics
    import time

    import torch

    if keep:
        from harness.allocator import keep_freed_memory
        assert keep_freed_memory()
    from harness.models import MemoryLayer

    torch.manual_seed(0)
    layer = MemoryLayer(width, width)
    x = torch.randn(4096, width, requires_grad=True)  # (tokens, width)
    linear = torch.nn.Linear(width, width, bias=False).bfloat16()
    xb = x.detach().bfloat16().requires_grad_(True)

    def median_ms(module: torch.nn.Module, inputs: torch.Tensor) -> float:
        times = []
        for _ in range(23):
            start = time.perf_counter()
            module.zero_grad(set_to_none=True)
            inputs.grad = None
            module(inputs).sum().backward()
            times.append(time.perf_counter() - start)
        return statistics.median(times[3:]) * 1e3

    return median_ms(layer, x), median_ms(linear, xb)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--keep", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(*step_ms(args.child, args.keep))
        return 0
    print("MemoryLayer fwd+bwd, 4096 tokens, median of 20 steps, ms (bf16 nn.Linear in the same "
          "process); one fresh process per cell, variants in turn each round")
    for width in args.widths:
        for round_ in range(args.rounds):
            cells = []
            for name, (flags, env) in VARIANTS.items():
                out = subprocess.run([sys.executable, __file__, "--child", str(width), *flags],
                                     env={**os.environ, **env}, capture_output=True, text=True,
                                     check=True).stdout.split()
                memory, linear = map(float, out)
                cells.append(f"{name} {memory:.1f} ({linear:.1f}, {linear / memory:.2f}x)")
            print(f"{width}x{width} round {round_ + 1}: " + "; ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
