"""The thread policy: explicit count, environment, and the idle-core default."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from daer.errors import BadInputError
from daer.utils import threads


def test_explicit_count_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(threads.ENV, "3")
    assert threads.resolve_threads(1) == 1
    assert threads.resolve_threads(None) == 3
    assert threads.resolve_threads(None, default=1) == 3  # a command's own default yields to the environment


@pytest.mark.parametrize("bad", ["0", "-1", "two", "1.5"])
def test_bad_environment_value_is_refused(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv(threads.ENV, bad)
    with pytest.raises(BadInputError, match=threads.ENV):
        threads.resolve_threads(None)


def test_auto_leaves_busy_cores_to_other_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(threads.ENV, raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    monkeypatch.setattr(threads, "busy_cores", lambda window_s=0.1: 1.2)
    assert threads.resolve_threads(None) == 3
    monkeypatch.setattr(threads, "busy_cores", lambda window_s=0.1: 7.0)
    assert threads.resolve_threads(None) == 1  # never fewer than one
    monkeypatch.setattr(threads, "busy_cores", lambda window_s=0.1: 0.0)
    assert threads.resolve_threads(None, default=1) == 1 and threads.resolve_threads(2, default=1) == 2


def test_busy_cores_sees_a_spinning_process() -> None:
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        assert threads.busy_cores(0.5) > 0.5
    finally:
        spin.kill()
        spin.wait()


def test_configure_sets_torch_threads() -> None:
    before = torch.get_num_threads()
    try:
        assert threads.configure_threads(1) == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_cli_refuses_bad_environment_before_work() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import sys, daer.cli; sys.exit(daer.cli.main())", "data", "info", "/nonexistent"],
        capture_output=True,
        text=True,
        env={**os.environ, "DAER_THREADS": "lots"},
    )
    assert out.returncode == 2 and "DAER_THREADS" in out.stderr
