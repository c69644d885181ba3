"""Assemble benchmarks/RESULTS.md from per-benchmark sections (never edited by hand).

Each benchmark calls ``publish(name, markdown)`` (``write_section`` when it prints nothing); the section lands in
``benchmarks/results/<name>.md`` and RESULTS.md is regenerated from all sections in name order.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

from daer.utils.atomic import atomic_open

ROOT = Path(__file__).resolve().parent
SECTIONS = ROOT / "results"
RESULTS = ROOT / "RESULTS.md"


def machine_line() -> str:
    """One line describing the machine a figure was measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem_gb:.0f} GiB RAM, Python {platform.python_version()}"


def command_line(module: str, argv: list[str] | None) -> str:
    """How a benchmark was run, as a shell line: ``python -m MODULE ARGS`` (``argv`` None: this process's)."""
    args = argv if argv is not None else sys.argv[1:]
    return " ".join(["python -m", module, *(shlex.quote(a) for a in args)])


def git_sha() -> str:
    """Short SHA of the checkout, or 'unknown'."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def publish(name: str, markdown: str, write: bool = True) -> None:
    """Print a benchmark's section and, unless ``write`` is False (its ``--no-write``), store it."""
    print(markdown)
    if write:
        print(f"wrote {write_section(name, markdown)}")


def write_section(name: str, markdown: str) -> Path:
    """Store one benchmark's section and regenerate RESULTS.md."""
    path = SECTIONS / f"{name}.md"
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(markdown.rstrip() + "\n")
    rebuild()
    return path


def rebuild() -> None:
    """Concatenate every section into RESULTS.md."""
    parts = [
        "# Benchmark results\n",
        "Written by the benchmark commands (`make bench`), never by hand. Each section names the command,\n"
        "machine, data size and settings that produced it.\n",
    ]
    for section in sorted(SECTIONS.glob("*.md")):
        parts.append(section.read_text(encoding="utf-8").rstrip() + "\n")
    with atomic_open(RESULTS, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
