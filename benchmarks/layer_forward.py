"""Forward and forward+backward time of MemoryLayer against nn.Linear, with the roofline.

    python benchmarks/layer_forward.py [--tokens 4096] [--widths 512 768 1024]
                                       [--dtypes fp32 bf16] [--repeats 20] [--json]

The same as `harness bench`; the logic lives in harness/bench.py.
"""

import argparse
import sys

from harness import bench

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bench.add_arguments(parser)
    sys.exit(bench.main(parser.parse_args()))
