"""The `harness` command: parses arguments and calls one library function per subcommand."""

from __future__ import annotations

import argparse
import json
import sys

from harness import __version__


def _presets(args: argparse.Namespace) -> int:
    from harness.models import preset, preset_names
    from harness.models.sizes import describe

    rows = [describe(preset(name)) for name in preset_names()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'preset':<20} {'kind':<13} {'L':>3} {'d':>5} {'H':>3} {'c/b/K':>10} "
          f"{'params':>9} {'tables':>9} {'fp32 size':>10}")
    for row in rows:
        knobs = (f"{row['chunk_size']}/{row['bucket_bits']}/{row['num_tables']}"
                 if row["kind"] == "memoryformer" else "-")
        print(f"{row['name']:<20} {row['kind']:<13} {row['n_layer']:>3} {row['d_model']:>5} "
              f"{row['n_head']:>3} {knobs:>10} {row['params'] / 1e6:>8.1f}M "
              f"{row['table_params'] / 1e6:>8.1f}M {row['total_bytes'] / 2**30:>7.2f} GiB")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description=__doc__)
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    presets = commands.add_parser("presets", help="list model presets with their sizes")
    presets.add_argument("--json", action="store_true", help="print one JSON list")
    presets.set_defaults(run=_presets)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
