"""Huge pages for torch's large CPU tensors: importing daer turns them on, and the user's own setting wins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")

# Imports daer, then allocates, touches and frees a 64 MB tensor twice; prints the faults of the second.
_PROBE = """
import json, os, resource
import daer, torch
def faults_of_one_tensor():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.ones(1 << 24)  # 64 MB: glibc maps it fresh and unmaps it on free
    del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults_of_one_tensor()
print(json.dumps({"env": os.environ.get("THP_MEM_ALLOC_ENABLE"), "faults": faults_of_one_tensor()}))
"""


def _probe(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    cmd = [sys.executable, "-c", _PROBE]
    out = subprocess.run(cmd, env={**clean, **env}, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(
    not THP.exists() or "[never]" in THP.read_text(), reason="this kernel offers no transparent huge pages"
)
def test_a_large_tensor_faults_in_huge_pages_and_the_users_setting_wins() -> None:
    pages = (1 << 26) // 4096
    on = _probe()
    off = _probe(THP_MEM_ALLOC_ENABLE="0")
    assert on["env"] == "1" and off["env"] == "0"
    assert off["faults"] > pages // 2  # 4 KB pages: every page of the tensor faults in again
    assert on["faults"] < pages // 10
