"""The allocator policy: applied once on glibc, skipped when switched off."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

CODE = ("import harness.allocator as a; print(a.keep_freed_memory(), a.keep_freed_memory()); "
        "import torch; x = torch.empty(2**23); del x; y = torch.ones(2**23); print(float(y.sum()))")


def run(env: dict[str, str]) -> list[str]:
    # a fresh process each: the policy is process-wide and applied once
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                         check=True, env=env)
    return out.stdout.split()


def test_policy_is_applied_once_and_allocations_still_work():
    applied = run({**os.environ, "HARNESS_KEEP_FREED_MEMORY": "1"})
    assert applied[0] == applied[1]  # cached: the same answer twice
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert applied[0] == str(glibc)
    assert float(applied[2]) == 2**23
    assert run({**os.environ, "HARNESS_KEEP_FREED_MEMORY": "0"})[:2] == ["False", "False"]
