"""MemoryLayer against nn.Linear at matched shapes, and where each sits on the roofline.

`run_bench` returns rows (library data, JSON-able with `BenchRow.to_dict`); `format_bench`
prints them. Timings on a shared machine swing from run to run, so the two layers are timed in
the same process with their repeats interleaved (alternating which goes first) and compared as a
ratio of medians: speed-up > 1 means the memory layer is faster.

Memory layers run on the fused kernel (harness.models.fused_lookup) where it is built; each
forward row also times the reference path (plain torch) on the same tables, and with fp32
activations the forward is timed for each table storage (fp32; bf16 and int8 rows for inference,
see MemoryLayer.store_tables), so the output states what every speed-up was measured with.
bf16 activations are timed as they train under bf16 mixed precision (Lightning's `bf16-mixed`):
fp32 master tables with bf16 inputs and outputs, forward and backward on the kernel; their
forward rows store the tables in bf16 too (inference in bf16 end to end).

`device="cuda"` times the same layers on a GPU (the memory layer takes its reference path,
`embedding_bag`, there), synchronising the device around every timed call.

Roofline: a kernel whose arithmetic intensity (FLOPs per byte it must move) is below the
machine balance (FLOP/s of nn.Linear here / measured copy bandwidth) is memory-bound. A memory
layer does one multiply-add per table value it reads (1 / bytes-per-value FLOP per byte), so it
is memory-bound on any current machine; its useful speed is the share of the bandwidth its row
reads reach. FLOPs are multiply-adds (harness.models.cost).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.allocator import keep_freed_memory
from harness.errors import ConfigError
from harness.models import MemoryLayer, fused_lookup
from harness.models.cost import TRAINING_FLOPS_FACTOR
from harness.models.memory_layer import TABLE_STORAGES

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
PASSES = ("forward", "forward+backward")
WARMUP = 2  # untimed calls of each step before its repeats
CPU = torch.device("cpu")


@dataclass(frozen=True)
class BenchRow:
    width: int  # in = out features, both layers
    tokens: int
    dtype: str  # a key of DTYPES: inputs, outputs and nn.Linear's weight
    passes: str  # one of PASSES
    table_storage: str  # a key of TABLE_STORAGES: how the memory layer's tables are stored
    kernel: str  # "fused" or "reference": the path the memory layer's timing used
    threads: int
    bandwidth: float  # measured streaming copy, bytes read + written per second
    linear_ms: float | None  # median; None when the layer failed (see note)
    memory_ms: float | None
    reference_ms: float | None  # the same memory layer on the reference path (forward rows)
    linear_flops: int  # multiply-adds of the pass
    memory_read_bytes: int  # table rows the forward reads: tokens * K * out * bytes per value
    table_bytes: int  # all K * 2^b rows; rows read more than once may come from cache
    linear_intensity: float  # forward FLOPs per byte it must move (input, weight, output)
    memory_intensity: float  # forward FLOPs per byte of table rows read
    note: str = ""
    # The fastest dense layer a user could pick here: nn.Linear in fp32 or in bf16 (oneDNN runs
    # bf16 on AMX where the CPU has it), timed in the same interleaved run.
    anchor_ms: float | None = None
    anchor: str = ""  # "fp32 nn.Linear" or "bf16 nn.Linear"
    device: str = "cpu"
    # One thread's read bandwidth from a buffer half its L2 cache (where the kernel keeps the
    # rows it gathers); None without the fused kernel. The floor of a forward is its row reads
    # at this speed on every thread.
    cache_bandwidth: float | None = None

    @property
    def anchor_speedup(self) -> float | None:
        """anchor ms / memory ms: against the fastest dense option (> 1: memory layer faster)."""
        if self.anchor_ms is None or self.memory_ms is None:
            return None
        return self.anchor_ms / self.memory_ms

    @property
    def speedup(self) -> float | None:
        if self.linear_ms is None or self.memory_ms is None:
            return None
        return self.linear_ms / self.memory_ms

    @property
    def kernel_speedup(self) -> float | None:
        """Reference path ms / memory ms: what the fused kernel gains over plain torch."""
        if self.reference_ms is None or self.memory_ms is None:
            return None
        return self.reference_ms / self.memory_ms

    @property
    def linear_flops_per_s(self) -> float | None:
        return None if self.linear_ms is None else self.linear_flops / (self.linear_ms / 1e3)

    @property
    def memory_read_per_s(self) -> float | None:
        """Row-read bandwidth the memory layer's forward reaches (forward rows only)."""
        if self.memory_ms is None or self.passes != "forward":
            return None
        return self.memory_read_bytes / (self.memory_ms / 1e3)

    @property
    def bandwidth_share(self) -> float | None:
        reads = self.memory_read_per_s
        return None if reads is None else reads / self.bandwidth

    @property
    def floor_ms(self) -> float | None:
        """The forward's row reads (tokens x K x out x bytes) at L2 read speed on every thread."""
        if self.cache_bandwidth is None or self.passes != "forward":
            return None
        return self.memory_read_bytes / (self.cache_bandwidth * self.threads) * 1e3

    @property
    def floor_share(self) -> float | None:
        """floor ms / memory ms: the fraction of the L2 floor the forward reaches."""
        if self.floor_ms is None or self.memory_ms is None:
            return None
        return self.floor_ms / self.memory_ms

    @property
    def machine_balance(self) -> float | None:
        """FLOPs per byte at which nn.Linear's measured speed meets the bandwidth."""
        flops = self.linear_flops_per_s
        return None if flops is None or self.passes != "forward" else flops / self.bandwidth

    @property
    def linear_bound(self) -> str | None:
        return _bound(self.linear_intensity, self.machine_balance)

    @property
    def memory_bound(self) -> str | None:
        return _bound(self.memory_intensity, self.machine_balance)

    def to_dict(self) -> dict[str, Any]:
        derived = ("speedup", "anchor_speedup", "kernel_speedup", "linear_flops_per_s",
                   "memory_read_per_s", "floor_ms", "floor_share",
                   "bandwidth_share", "machine_balance", "linear_bound", "memory_bound")
        return {**asdict(self), **{name: getattr(self, name) for name in derived}}


def _bound(intensity: float, balance: float | None) -> str | None:
    if balance is None:
        return None
    return "memory" if intensity < balance else "compute"


def measure_bandwidth(nbytes: int = 256 * 2**20, repeats: int = 10,
                      device: torch.device | str = "cpu") -> float:
    """Bytes read + written per second by a streaming copy of an nbytes fp32 tensor.

    The best of the repeats, as STREAM reports: a ceiling, which other load only lowers.
    """
    src = torch.ones(nbytes // 4, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)  # warm-up: fault the pages in
    times = []
    for _ in range(repeats):
        synchronize(src.device)
        start = time.perf_counter()
        dst.copy_(src)
        synchronize(src.device)
        times.append(time.perf_counter() - start)
    return 2 * src.numel() * 4 / min(times)


def check_device(device: str) -> torch.device:
    """The device named on the command line, refused in one line where this machine lacks it."""
    allowed = "cpu" + (", cuda" if torch.cuda.is_available() else "")
    try:
        target = torch.device(device)
    except RuntimeError:
        raise ConfigError("device", f"{device!r} is not a device; allowed: {allowed}") from None
    if target.type not in ("cpu", "cuda") or (
            target.type == "cuda" and not torch.cuda.is_available()):
        raise ConfigError("device", f"{device!r} is not available here; allowed: {allowed}")
    return target


def l2_bytes() -> int:
    """The first core's L2 cache size (Linux sysfs), else 1 MiB."""
    try:
        size = Path("/sys/devices/system/cpu/cpu0/cache/index2/size").read_text().strip()
        return int(size.rstrip("K")) * 1024 if size.endswith("K") else int(size)
    except (OSError, ValueError):
        return 2**20


def measure_cache_bandwidth(repeats: int = 5) -> float | None:
    """One thread's read bytes/s from a buffer of half its L2 cache, by the fused kernel's
    probe (compiled code: a Python loop could not keep up); None where the kernel is missing."""
    if not fused_lookup.available()[0]:
        return None
    nbytes = l2_bytes() // 2
    return fused_lookup.read_bandwidth(nbytes, max(1, 2**25 // nbytes), repeats)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU, which runs calls to completion)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_bench(
    widths: Sequence[int] = (512, 768, 1024),
    tokens: int = 4096,
    dtypes: Sequence[str] = ("fp32", "bf16"),
    repeats: int = 20,
    passes: Sequence[str] = PASSES,
    chunk_size: int = 8,
    bandwidth_bytes: int = 256 * 2**20,
    seed: int = 0,
    storages: Sequence[str] = ("fp32", "bf16", "int8"),
    device: str = "cpu",
) -> list[BenchRow]:
    """Time MemoryLayer(w, w, chunk_size) against nn.Linear(w, w, bias=False) on (tokens, w).

    fp32 inputs: the forward once per table storage in `storages`, forward+backward with fp32
    tables (the only trainable storage). bf16 inputs: the forward with bf16 tables, and
    forward+backward with fp32 master tables (bf16 mixed precision).
    """
    unknown = (sorted(set(dtypes) - set(DTYPES)) + sorted(set(passes) - set(PASSES))
               + sorted(set(storages) - set(TABLE_STORAGES)))
    if unknown:
        raise ValueError(f"unknown dtype, pass or table storage {unknown}; "
                         f"allowed: {[*DTYPES, *PASSES, *TABLE_STORAGES]}")
    target = torch.device(device)
    keep_freed_memory()  # as training runs do: no page faults for each pass's fresh buffers
    bandwidth = measure_bandwidth(bandwidth_bytes, device=target)
    cache = measure_cache_bandwidth() if target.type == "cpu" else None
    kernel = "fused" if target.type == "cpu" and fused_lookup.available()[0] else "reference"
    rows = []
    for width in widths:
        for dtype in dtypes:
            with torch.random.fork_rng(devices=[]):  # seeded layers, caller's RNG untouched
                torch.manual_seed(seed)
                linear = nn.Linear(width, width, bias=False)
                memory = MemoryLayer(width, width, chunk_size=chunk_size)
                x = torch.randn(tokens, width)
                reference = MemoryLayer(width, width, chunk_size=chunk_size, kernel="reference")
            other = "bf16" if dtype == "fp32" else "fp32"  # the other dense option
            # a copy: Module.to converts in place
            other_linear = copy.deepcopy(linear).to(target, DTYPES[other])
            other_x = x.to(target, DTYPES[other])
            # The memory layers keep fp32 tables (master weights, as under bf16-mixed); only
            # the activations and nn.Linear take the row's dtype.
            linear, x = linear.to(target, DTYPES[dtype]), x.to(target, DTYPES[dtype])
            memory, reference = memory.to(target), reference.to(target)
            reference.load_state_dict(memory.state_dict())  # the same tables and hashing
            for pass_name in passes:
                backward = pass_name == "forward+backward"
                for storage in _storages(dtype, backward, storages):
                    for layer in (memory, reference):
                        if layer.table_storage != storage:
                            layer.store_tables(storage)
                    steps = {"linear": _step(linear, x, backward, target),
                             "memory": _step(memory, x, backward, target),
                             "other_linear": _step(other_linear, other_x, backward, target)}
                    if not backward:
                        steps["reference"] = _step(reference, x, backward, target)
                    ms, note = interleaved_medians(steps, repeats)
                    # every timed storage is on the kernel: backward rows train fp32 tables
                    rows.append(_row(width, tokens, dtype, pass_name, storage, kernel, bandwidth,
                                     memory, ms, note, other, cache))
    return rows


def _storages(dtype: str, backward: bool, storages: Sequence[str]) -> list[str]:
    if backward:
        return ["fp32"]  # the only trainable storage: fp32 master tables whatever the inputs
    return list(storages) if dtype == "fp32" else [dtype]


def _row(width: int, tokens: int, dtype: str, pass_name: str, storage: str, kernel: str,
         bandwidth: float, memory: MemoryLayer, ms: dict[str, float | None],
         note: str, other: str, cache_bandwidth: float | None = None) -> BenchRow:
    value_bytes = memory.tables.element_size()
    rows_per_token = memory.num_tables * width  # values read per token, also its multiply-adds
    forward_flops = tokens * width * width
    moved = (2 * tokens * width + width * width) * DTYPES[dtype].itemsize  # x, W, y
    return BenchRow(
        width=width, tokens=tokens, dtype=dtype, passes=pass_name, table_storage=storage,
        kernel=kernel, threads=torch.get_num_threads(), bandwidth=bandwidth,
        linear_ms=ms["linear"], memory_ms=ms["memory"], reference_ms=ms.get("reference"),
        # forward + input gradient + weight gradient, T * in * out each (models/cost.py)
        linear_flops=forward_flops * (TRAINING_FLOPS_FACTOR if pass_name != "forward" else 1),
        memory_read_bytes=tokens * rows_per_token * value_bytes,
        table_bytes=memory.tables.numel() * value_bytes,
        linear_intensity=forward_flops / moved,
        memory_intensity=rows_per_token / (rows_per_token * value_bytes),
        note=note, **_anchor({dtype: ms["linear"], other: ms.get("other_linear")}),
        device=str(memory.tables.device), cache_bandwidth=cache_bandwidth,
    )


def _anchor(linear_ms: dict[str, float | None]) -> dict[str, Any]:
    """The faster of fp32 and bf16 nn.Linear: the dense layer to beat."""
    timed = {dtype: t for dtype, t in linear_ms.items() if t is not None}
    if not timed:
        return {}
    best = min(timed, key=lambda dtype: (timed[dtype], dtype))
    return {"anchor_ms": timed[best], "anchor": f"{best} nn.Linear"}


def _step(layer: nn.Module, x: torch.Tensor, backward: bool,
          device: torch.device = CPU) -> Callable[[], None]:
    if not backward:
        def forward() -> None:
            with torch.no_grad():
                layer(x)
            synchronize(device)
        return forward
    x = x.detach().requires_grad_(True)  # a layer inside a network passes gradient back

    def forward_backward() -> None:
        layer.zero_grad(set_to_none=True)
        x.grad = None
        layer(x).sum().backward()
        synchronize(device)
    return forward_backward


def interleaved_medians(steps: dict[str, Callable[[], None]],
                         repeats: int) -> tuple[dict[str, float | None], str]:
    """Median ms of each step, repeats interleaved; a step that raises is reported in the note."""
    working, notes = [], []
    for name, step in steps.items():
        try:
            for _ in range(WARMUP):  # allocator, thread pool, kernels; finds missing dtypes
                step()
            working.append(name)
        except (RuntimeError, NotImplementedError) as error:
            notes.append(f"{name} unsupported: {str(error).splitlines()[0]}")
    times: dict[str, list[float]] = {name: [] for name in working}
    for i in range(repeats):
        for name in working if i % 2 == 0 else working[::-1]:
            start = time.perf_counter()
            steps[name]()
            times[name].append((time.perf_counter() - start) * 1e3)
    ms = {name: statistics.median(times[name]) if name in working and repeats else None
          for name in steps}
    return ms, "; ".join(notes)


def format_bench(rows: Sequence[BenchRow]) -> str:
    if not rows:
        return "no benchmark rows"
    first = rows[0]
    lines = [
        machine_line(first.device),
        f"torch {torch.__version__}, {first.threads} threads, {first.tokens} tokens, "
        f"MemoryLayer tau = chunk_size, K = width / tau, {first.kernel} kernel; streaming copy "
        f"bandwidth {first.bandwidth / 1e9:.1f} GB/s (read + write); L2 read "
        f"{_num(first.cache_bandwidth, '.1f', ' GB/s', 1e9)} per thread ({l2_bytes() // 2048} KB "
        f"buffer)",
        f"{'shape':>11} {'dtype':>5} {'tables':>6} {'pass':>8} {'linear ms':>10} "
        f"{'memory ms':>10} {'speed-up':>8} {'anchor':>14} {'anchor ms':>9} {'vs anchor':>9} "
        f"{'ref ms':>8} {'kernel':>7} {'lin GFLOP/s':>11} "
        f"{'rows GB/s':>9} {'% bw':>5} {'floor ms':>8} {'% floor':>7} {'AI lin':>7} "
        f"{'AI mem':>6} {'balance':>7}  "
        f"bound (linear / memory)",
    ]
    notes = []
    for row in rows:
        bound = ("-" if row.linear_bound is None
                 else f"{row.linear_bound} / {row.memory_bound}")
        lines.append(
            f"{row.width:>5}x{row.width:<5} {row.dtype:>5} {row.table_storage:>6} "
            f"{'fwd' if row.passes == 'forward' else 'fwd+bwd':>8} "
            f"{_num(row.linear_ms, '.2f'):>10} {_num(row.memory_ms, '.2f'):>10} "
            f"{_num(row.speedup, '.2f', 'x'):>8} {row.anchor or '-':>14} "
            f"{_num(row.anchor_ms, '.2f'):>9} {_num(row.anchor_speedup, '.2f', 'x'):>9} "
            f"{_num(row.reference_ms, '.2f'):>8} "
            f"{_num(row.kernel_speedup, '.2f', 'x'):>7} "
            f"{_num(row.linear_flops_per_s, '.1f', '', 1e9):>11} "
            f"{_num(row.memory_read_per_s, '.1f', '', 1e9):>9} "
            f"{_num(row.bandwidth_share, '.0%'):>5} {_num(row.floor_ms, '.2f'):>8} "
            f"{_num(row.floor_share, '.0%'):>7} {row.linear_intensity:>7.1f} "
            f"{row.memory_intensity:>6.2f} {_num(row.machine_balance, '.1f'):>7}  {bound}")
        if row.note:
            notes.append(f"{row.width}x{row.width} {row.dtype} {row.table_storage} "
                         f"{row.passes}: {row.note}")
    lines += [
        "speed-up = linear ms / memory ms (> 1: memory layer faster), nn.Linear in the row's",
        "dtype; anchor = the faster of fp32 and bf16 nn.Linear on this machine (the dense layer a",
        "user would pick), timed in the same run; vs anchor = anchor ms / memory ms; ref ms = the",
        "layer on its reference path (plain torch), kernel = ref ms / memory ms; dtype = the",
        "activations (bf16 fwd+bwd: bf16-mixed training, fp32 master tables); tables = how the",
        "memory layer stores its tables (bf16, int8 with a scale per row: inference only);",
        "rows GB/s = table rows read by the memory layer's forward; AI = multiply-adds per byte",
        "moved; balance = linear FLOP/s / bandwidth: a layer with AI below it is memory-bound.",
        "floor ms = the forward's row reads (tokens x K x out x bytes per value) at the L2 read",
        "speed on every thread, % floor = floor ms / memory ms (100%: rows move as fast as L2",
        "delivers them); % bw counts every row read against the DRAM copy bandwidth; rows read",
        "again may come from cache, so it can pass 100%:",
        *(f"  {r.width}x{r.width} {r.dtype} {r.table_storage}: tables {r.table_bytes / 1e6:.1f} MB,"
          f" each row read {r.memory_read_bytes / r.table_bytes:.1f}x per forward on average"
          for r in rows if r.passes == "forward"),
        *notes,
    ]
    return "\n".join(lines)


def machine_line(device: str = "cpu") -> str:
    """The CPU, the instruction sets that decide dense speed (AVX-512, AMX) and the threads;
    on a CUDA device, the GPU first."""
    gpu = ""
    if torch.device(device).type == "cuda":
        name = torch.cuda.get_device_name(torch.device(device))
        gpu = f"GPU: {name}, CUDA {torch.version.cuda}; "
    model, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown CPU":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:  # not Linux: the capability torch reports is still known
        pass
    isa = [name for name in ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
           if name in flags]
    return (f"{gpu}CPU: {model}; {', '.join(isa) or 'no AVX-512/AMX flags read'}; torch CPU "
            f"capability {torch.backends.cpu.get_cpu_capability()}; "
            f"{torch.get_num_threads()} threads")


def _num(value: float | None, spec: str, suffix: str = "", scale: float = 1.0) -> str:
    return "-" if value is None else f"{value / scale:{spec}}{suffix}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `harness bench` and of benchmarks/layer_forward.py (one definition)."""
    parser.add_argument("--tokens", type=int, default=4096,
                        help="rows of the input to one layer (default: %(default)s)")
    parser.add_argument("--widths", type=int, nargs="+", default=[512, 768, 1024],
                        help="d_in = d_out of the layers timed (default: %(default)s)")
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=["fp32", "bf16"],
                        help="inputs, outputs and nn.Linear's weight (default: %(default)s)")
    parser.add_argument("--tables", nargs="+", choices=list(TABLE_STORAGES),
                        default=list(TABLE_STORAGES),
                        help="memory-layer table storages timed with fp32 inputs (forward; "
                             "default: %(default)s)")
    parser.add_argument("--repeats", type=int,
                        help="timed repeats of each step (default: 20; 10 with --attention "
                             "or --model)")
    parser.add_argument("--chunk-size", type=int, default=8,
                        help="the memory layer's chunk size tau, input dims per table (default: "
                             "%(default)s)")
    parser.add_argument("--device", default="cpu",
                        help="torch device to time on, e.g. cuda (default: cpu)")
    parser.add_argument("--json", action="store_true", help="print one JSON list of rows")


def main(args: argparse.Namespace) -> int:
    check_device(args.device)
    rows = run_bench(args.widths, args.tokens, args.dtypes, args.repeats or 20,
                     chunk_size=args.chunk_size, storages=args.tables, device=args.device)
    print(json.dumps([row.to_dict() for row in rows], indent=2) if args.json
          else format_bench(rows))
    return 0
