"""Compute accounting: FLOPs (fvcore count and analytic formulas), memory, the `flops` report.

Importing this package loads no fvcore: only `harness.metrics.flops` uses it, inside its functions.
"""
