"""Two gloo processes give the same loss and gradients as one process over the same global batch."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from daer.models.model import load_model
from daer.train.checkpoint import latest_checkpoint, read_trainer_state
from daer.train.distributed import (
    all_gather_with_grad,
    all_reduce_grads,
    all_reduce_mean,
    cleanup_distributed,
    init_distributed,
)
from daer.train.loss import ContrastiveLoss, gather_features
from daer.train.train_config import TrainConfig
from daer.train.trainer import train
from tests.data.test_dataset import write_tiny
from tests.train.test_loss import Feats, two_level

GLOBAL_B, D = 8, 6


class Toy(torch.nn.Module):
    """Two tiny towers producing token and global features."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.text = torch.nn.Linear(D, D)
        self.shape = torch.nn.Linear(3, D)
        self.logit_scale = torch.nn.Parameter(torch.tensor(2.0))

    def forward(self, words: torch.Tensor, mask: torch.Tensor, points: torch.Tensor) -> tuple[Feats, Feats]:
        tok = self.text(words)  # (B, T, D)
        m = mask.float()[..., None]
        words = [f"caption with {int(n)} words" for n in mask.sum(1)]
        text = Feats(tok, mask, (tok * m).sum(1) / m.sum(1), words)
        pts = self.shape(points)  # (B, N, D)
        return text, Feats(pts, torch.ones(pts.shape[:2], dtype=torch.bool), pts.amax(1))


def global_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    words = torch.randn(GLOBAL_B, 5, D, generator=g)
    mask = torch.ones(GLOBAL_B, 5, dtype=torch.bool)
    mask[: GLOBAL_B // 2, 3:] = False  # rank 0's rows are shorter: their padded T differs per rank
    mask[GLOBAL_B // 2 :, 4:] = torch.rand(GLOBAL_B // 2, 1, generator=g) > 0.5
    points = torch.randn(GLOBAL_B, 16, 3, generator=g)
    return words, mask, points


def step(model: Toy, words: torch.Tensor, mask: torch.Tensor, points: torch.Tensor) -> dict[str, torch.Tensor]:
    text, shapes = model(words, mask, points)
    out = ContrastiveLoss(pair_score=two_level, fine_weight=0.7)(text, shapes, model.logit_scale.exp())
    out["loss"].backward()
    return out


def toy_step(rank: int, world: int, out_dir: str) -> None:
    """One loss + backward + gradient all-reduce on this rank's half of the toy global batch."""
    words, mask, points = global_batch()
    rows = slice(rank * GLOBAL_B // world, (rank + 1) * GLOBAL_B // world)
    t_max = int(mask[rows].sum(1).max())  # each rank pads its text to its own longest caption
    model = Toy()
    out = step(model, words[rows, :t_max], mask[rows, :t_max], points[rows])
    all_reduce_grads(list(model.parameters()))
    gathered = all_gather_with_grad(torch.full((rank + 1, 2), float(rank)))  # uneven rows
    text, _ = model(words[rows, :t_max], mask[rows, :t_max], points[rows])
    full_text = gather_features(text)
    assert full_text.words == model(words, mask, points)[0].words
    assert full_text.tokens.shape == (GLOBAL_B, 5, D) and torch.equal(full_text.mask, mask)
    result = {f"grad.{n}": p.grad for n, p in model.named_parameters()}
    result |= {k: all_reduce_mean(v) for k, v in out.items()}
    result["gathered"] = gathered
    if rank == 0:
        save_file({k: v.contiguous() for k, v in result.items()}, str(Path(out_dir) / "rank0.safetensors"))


def worker(rank: int, world: int, port: int, out_dir: str) -> None:
    """A torchrun-like rank: the toy loss check, then a short tiny-config training run."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    init_distributed("cpu")
    try:
        toy_step(rank, world, out_dir)
        train(tiny_config(str(Path(out_dir) / "data"), str(Path(out_dir) / "ddp"), batch_size=8 // world))
    finally:
        cleanup_distributed()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_dir(tmp_path_factory) -> Path:
    """Runs the 2-process job once for both tests."""
    out = tmp_path_factory.mktemp("ddp")
    write_tiny(out / "data")
    mp.spawn(worker, args=(2, free_port(), str(out)), nprocs=2, join=True)
    return out


def test_two_processes_match_one(ddp_dir):
    got = load_file(str(ddp_dir / "rank0.safetensors"))
    model = Toy()
    ref = step(model, *global_batch())
    for k in ("loss", "loss_global", "loss_fine"):
        assert torch.allclose(got[k], ref[k], atol=1e-5), (k, got[k], ref[k])
    for n, p in model.named_parameters():
        assert torch.allclose(got[f"grad.{n}"], p.grad, atol=1e-5), n
    assert got["gathered"].tolist() == [[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]]


def tiny_config(data: str, out: str, batch_size: int) -> TrainConfig:
    return TrainConfig(
        data=data, out=out, config="tiny", steps=6, batch_size=batch_size, ckpt_every=3, log_every=1, warmup_steps=1,
        progress=False, device="cpu",
    )  # fmt: skip


def test_two_process_training_matches_one(ddp_dir, tmp_path):
    train(tiny_config(str(ddp_dir / "data"), str(tmp_path / "one"), batch_size=8))

    def losses(run: Path) -> list[float]:
        return [json.loads(x)["loss"] for x in (run / "log.jsonl").read_text().splitlines()]

    # float drift only: after 6 AdamW steps the two runs differ by ~2e-5 relative
    assert losses(ddp_dir / "ddp") == pytest.approx(losses(tmp_path / "one"), rel=1e-4, abs=1e-4)
    a, b = load_model(ddp_dir / "ddp").checkpoint_state(), load_model(tmp_path / "one").checkpoint_state()
    for k in a:  # Adam turns float-level gradient noise on near-zero gradients into lr-sized steps
        assert torch.allclose(a[k], b[k], atol=1e-3), k
    _, meta = read_trainer_state(latest_checkpoint(ddp_dir / "ddp"))
    assert meta["world_size"] == 2 and set(meta["rng"]) == {"0", "1"}
