"""The training loop: AdamW, warm-up + cosine, clipping, bf16 autocast, atomic checkpoints, exact resume.

One code path for one process and for ``torchrun --nproc_per_node=N`` (gloo on CPU, NCCL on CUDA):
each rank encodes its slice of the global batch, the loss gathers features from every rank, and
gradients are averaged with one all-reduce before the optimizer step.

Callbacks (e.g. DAP calibration) are objects with ``on_step_end(step, trainer)``, called after
every optimizer step with the number of steps done, before that step's checkpoint is written; a
callback with ``state_dict()`` / ``load_state_dict(d)`` (JSON-able) has its state checkpointed.
"""

from __future__ import annotations

import json
import math
import random
import time
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm import tqdm

from daer.data.dataset import Augment, Batch, EpochBatchSampler, ShapeTextDataset, collate
from daer.data.shards import read_manifest
from daer.errors import BadInputError, IntegrityError
from daer.models.model import DaerModel, create_model, load_model
from daer.models.pointops import normalize_batch, precompute_groups
from daer.synth.generator import SYNTH_GENERATOR, attribute_mask
from daer.synth.part_drop import PartDrop
from daer.synth.part_swap import PartSwap
from daer.synth.splits import split_table
from daer.train import checkpoint as ckpt
from daer.train.batching import CategoryBatchSampler
from daer.train.distributed import (
    DistInfo,
    all_gather_list,
    all_reduce_grads,
    all_reduce_mean,
    barrier,
    broadcast_module,
    init_distributed,
)
from daer.train.grounding_loss import TokenAttributeMasks, grounding_loss, part_readout_loss, part_swap_loss
from daer.train.hard_negatives import SwapNegatives, swap_loss
from daer.train.loss import ContrastiveLoss
from daer.train.run_folder import LOG_FILE, JsonlLog, manifest_hash, record_resume, write_run_info
from daer.train.schedule import lr_at, set_lr
from daer.train.train_config import TRAIN_CONFIG, TrainConfig
from daer.train.weight_average import WeightAverage
from daer.utils.atomic import write_json


class Callback(Protocol):
    def on_step_end(self, step: int, trainer: Trainer) -> None: ...


def _callback_name(cb: Any) -> str:
    return str(getattr(cb, "name", type(cb).__name__))


class Trainer:
    """Builds model, data, optimizer and loss from a :class:`TrainConfig`; :meth:`fit` trains.

    Args:
        cfg: the training configuration.
        callbacks: objects with ``on_step_end(step, trainer)`` (see the module docstring).
        dist_info: the process group position (default: :func:`init_distributed`).
    """

    def __init__(
        self, cfg: TrainConfig, callbacks: list[Callback] | None = None, dist_info: DistInfo | None = None
    ) -> None:
        if not cfg.data or not cfg.out:
            raise BadInputError("training needs a data folder (--data) and a run folder (--out)")
        self.cfg = cfg
        self.dist = dist_info or init_distributed(cfg.device)
        self.device = self.dist.device
        self.callbacks: list[Callback] = list(callbacks or [])
        self.run_dir = Path(cfg.out)
        self.step = 0
        self.train_seconds = 0.0  # loop time of the steps done so far, over every resume (the time budget's clock)
        self.warmup_seconds: float | None = None  # loop time when the warm-up ended (time-budget schedule)
        self.prefill_seconds = 0.0
        self.metrics: dict[str, float] = {}
        self.manifest = read_manifest(cfg.data)  # a clear error for a missing or damaged data set, before any work
        self.data_hash = manifest_hash(cfg.data)

        resume_from = self._check_run_folder()
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        overrides = dict(cfg.model_overrides)
        overrides["mode"] = cfg.mode
        if cfg.text_encoder:
            overrides["text_encoder"] = cfg.text_encoder
        self.model: DaerModel = create_model(cfg.config, **overrides).to(self.device)
        self.model.text.noise.std = cfg.text_noise
        self._seed_rngs()

        self.dataset = self._build_dataset()
        self.token_masks: TokenAttributeMasks | None = None
        if self._part_losses() and self.model.haf is not None and self.dataset.point_attrs is not None:
            self.token_masks = TokenAttributeMasks(self.model.config.text_content_words)
        self.swaps: SwapNegatives | None = None
        if cfg.swap_negatives > 0:
            self.swaps = SwapNegatives(self.dataset.ids, self.dataset.captions, cfg.swap_scope)
        if cfg.text_prefill:
            captions = [c for caps in self.dataset.captions for c in caps]
            self.prefill_seconds = self.prefill_text_cache(captions + (self.swaps.captions() if self.swaps else []))
        self.sampler = self._sampler(0)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        # pretrained text layers (text_finetune_layers) take a smaller step than the layers learnt from scratch
        tail_layers = getattr(self.model.text, "tail", None)
        pretrained = {id(p) for p in tail_layers.parameters()} if tail_layers is not None else set()
        fresh = [p for p in self.params if id(p) not in pretrained]
        decay = [p for p in fresh if p.dim() >= 2]
        no_decay = [p for p in fresh if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if pretrained:
            tail = [p for p in self.params if id(p) in pretrained]
            groups.append({"params": tail, "weight_decay": cfg.weight_decay, "lr_scale": cfg.text_lr_scale})
        self.optimizer = torch.optim.AdamW(
            groups,
            lr=cfg.lr,
            betas=(0.9, 0.98),
            eps=1e-6,
        )
        self.loss_fn = self._loss()
        self.average = WeightAverage(self.model, cfg.weight_average) if cfg.weight_average > 0 else None
        self.log = JsonlLog(self.run_dir / LOG_FILE, enabled=self.dist.is_main)

        if resume_from is not None:
            self.load(resume_from)
            if self.dist.is_main:  # the run's config now carries the settings a resume may change (steps...)
                write_json(self.run_dir / TRAIN_CONFIG, cfg.to_dict())
        else:
            broadcast_module(self.model)
            if self.dist.is_main:
                write_json(self.run_dir / TRAIN_CONFIG, cfg.to_dict())
                write_run_info(
                    self.run_dir, self.data_hash, self.model.config.to_dict(), self.dist.world, str(self.device)
                )
        barrier()

    # ------------------------------------------------------------------------------------------
    # set-up

    def _check_run_folder(self) -> Path | None:
        """The checkpoint to resume from, or None for a fresh run; refuse to overwrite a run."""
        latest = ckpt.latest_checkpoint(self.run_dir)
        has_run = (self.run_dir / TRAIN_CONFIG).is_file()
        if not self.cfg.resume:
            if has_run or latest is not None:
                raise BadInputError(f"{self.run_dir} already holds a training run: pass --resume or choose a new --out")
            if self.dist.is_main:
                self.run_dir.mkdir(parents=True, exist_ok=True)
            return None
        if not has_run:
            if self.dist.is_main:
                print(f"no run in {self.run_dir} yet: starting from step 0")
                self.run_dir.mkdir(parents=True, exist_ok=True)
            return None
        saved = TrainConfig.load(self.run_dir)
        conflicts = self.cfg.resume_conflicts(saved)
        if conflicts:
            raise BadInputError(f"--resume with settings that differ from the run's: {'; '.join(conflicts)}")
        if latest is None and self.dist.is_main:
            print(f"no checkpoint in {self.run_dir} yet: starting from step 0")
        return latest

    def _seed_rngs(self) -> None:
        seed = self.cfg.seed * 1000 + self.dist.rank + 1
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)

    def _loss(self) -> ContrastiveLoss:
        """The contrastive loss of the run's mode: fine terms on HAF's level scores or on their fused sum."""
        cfg, haf = self.cfg, self.model.haf
        if cfg.mode != "haf" or haf is None:
            return ContrastiveLoss()
        if cfg.fine_loss == "levels":
            return ContrastiveLoss(haf.level_scores, cfg.fine_weight, cfg.fine_negatives,
                                   lambda t, s, pairs: haf.paired_level_scores(t, s, pairs=pairs))  # fmt: skip
        return ContrastiveLoss(self.model.fine_scores, cfg.fine_weight, cfg.fine_negatives,
                               lambda t, s, pairs: haf.fine(haf.paired_level_scores(t, s, pairs=pairs)))  # fmt: skip

    def _part_losses(self) -> bool:
        """Whether a loss reads part labels (grounding, part read-out, part swap)."""
        return max(self.cfg.ground_weight, self.cfg.part_weight, self.cfg.part_swap_weight) > 0

    def _build_dataset(self) -> ShapeTextDataset:
        mc, haf = self.model.config, self.cfg.mode == "haf"
        kwargs = {
            "seed": self.cfg.seed,
            "n_points": mc.n_points,
            "augment": Augment(stretch=self.cfg.stretch) if self.cfg.augment else None,
            "groups_fn": partial(precompute_groups, level_sizes=mc.level_sizes, level_k=mc.level_k),  # picklable
            "groups_key": json.dumps({"level_sizes": mc.level_sizes, "level_k": mc.level_k}),
            "group_config": mc,  # the shards' stored groups of this config, where the data set has them
            "cache_dir": self.run_dir / "cache",
            "labels": max(self.cfg.part_drop, self.cfg.part_swap) > 0 or (self._part_losses() and haf),
        }
        if self.cfg.part_swap > 0:
            if self.manifest.get("point_attrs"):
                kwargs["part_swap"] = PartSwap(self.cfg.part_swap, forbidden=self._test_combinations())
            elif self.dist.is_main:
                print(f"part swap is off: {self.cfg.data} has no part labels (it needs Align3D-Synth's point_attrs)")
        if self.cfg.part_drop > 0:
            if self.manifest.get("point_attrs"):
                kwargs["part_drop"] = PartDrop(
                    self.cfg.part_drop,
                    absent=self.cfg.part_drop_absent,
                    optional_only=self.cfg.part_drop_optional,
                    generic=self.cfg.part_drop_generic,
                )
                if self.cfg.part_drop_within and self.cfg.part_drop_optional and self.dist.is_main:
                    print("part_drop_within changes nothing with part_drop_optional: only optional parts are removed")
            elif self.dist.is_main:
                print(f"part drop is off: {self.cfg.data} has no part labels (it needs Align3D-Synth's point_attrs)")
        # Rank 0 computes the point groups and writes the cache; the others then read it.
        if self.dist.is_main:
            ds = ShapeTextDataset.from_folder(self.cfg.data, "train", **kwargs)
        barrier()
        if not self.dist.is_main:
            ds = ShapeTextDataset.from_folder(self.cfg.data, "train", **kwargs)
        return ds

    def _test_combinations(self) -> frozenset[str]:
        """The full combinations of an Align3D-Synth set's test split (a part swap never shows one, so the test
        split stays unseen in every form); empty for other data."""
        if self.manifest.get("generator") != SYNTH_GENERATOR:
            return frozenset()
        table = split_table(int(self.manifest.get("seed", 0)))
        return frozenset(key for key, split in table.items() if split == "test")

    def prefill_text_cache(self, captions: Any, batch: int = 256) -> float:
        """Encode captions once in large batches so that their frozen features sit in the text cache.

        Without it the first epoch runs the text encoder on every step's new captions, in small
        batches. Ranks split the work; no-op for an encoder without a cache (the tiny one).
        Returns the seconds it took.
        """
        if getattr(self.model.text, "cache", None) is None:
            return 0.0
        t0 = time.perf_counter()
        unique = list(dict.fromkeys(captions))[self.dist.rank :: self.dist.world]
        self.model.eval()  # only the cache is wanted: no training-time feature noise (train_step sets train())
        with torch.no_grad():
            for start in range(0, len(unique), batch):
                self.model.encode_text(unique[start : start + batch])
        barrier()
        return time.perf_counter() - t0

    def _sampler(self, start_step: int) -> EpochBatchSampler | CategoryBatchSampler:
        cfg, rank, world = self.cfg, self.dist.rank, self.dist.world
        if cfg.batch_categories:
            return CategoryBatchSampler(
                self.dataset.categories, cfg.batch_size, cfg.batch_categories, cfg.seed, rank, world, start_step
            )
        return EpochBatchSampler(len(self.dataset), cfg.batch_size, cfg.seed, rank, world, start_step=start_step)

    # ------------------------------------------------------------------------------------------
    # one step

    def train_step(self, batch: Batch) -> dict[str, float]:
        """Forward, backward, gradient all-reduce, clip and AdamW step on one batch."""
        self.model.train()
        self.model.text.noise.key = self.cfg.seed * 1_000_003 + self.step  # the same on every rank and resume
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.cfg.bf16):
            text = self.model.encode_text(batch.captions)
            shapes = self.model.encode_points(batch.points, batch.groups)
            out = self.loss_fn(
                text, shapes, self.model.logit_scale_value(), self.model.fine_logit_scale_value(), self._exclude(batch)
            )
            negatives = None
            if self.swaps is not None:
                swap, negatives = self._swap_term(batch, text, shapes, out["loss"])
                out |= swap
            if self.token_masks is not None:
                out |= self._ground_term(batch, text, shapes, out["loss"], negatives)
        self.optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        all_reduce_grads(self.params)
        max_norm = self.cfg.grad_clip if self.cfg.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm)
        self.optimizer.step()
        if self.average is not None:
            self.average.update(self.step)
        return {k: float(v.detach()) for k, v in out.items()} | {"grad_norm": float(grad_norm)}

    def _exclude(self, batch: Batch) -> torch.Tensor | None:
        """With ``part_drop_within``: the (local row, global column) pairs left out of the in-batch contrast,
        those between a view that lost a part its category needs and a shape of another category (a chair
        without its back is not taught to be a chair against benches, nor a bench against chairs)."""
        if not self.cfg.part_drop_within or batch.defining is None:
            return None
        categories = all_gather_list(list(batch.categories))
        defining = torch.tensor(all_gather_list(batch.defining.tolist()), dtype=torch.bool)
        start = self.dist.rank * len(batch)  # every rank holds batch_size rows
        names = {c: i for i, c in enumerate(dict.fromkeys(categories))}
        cat = torch.tensor([names[c] for c in categories])
        exclude = (cat[:, None] != cat[None]) & (defining[:, None] | defining[None])
        return exclude[start : start + len(batch)].to(self.device)

    def _swap_term(
        self, batch: Batch, text: Any, shapes: Any, loss: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], tuple[Any, torch.Tensor, list[str]] | None]:
        """The loss with the attribute-swap term added (``loss``, ``loss_swap``), and the negatives (their
        features, the batch row each belongs to, their captions; None when no caption had one). Negatives
        are drawn from a generator seeded by (seed, epoch, shape), so a resumed run draws the same ones."""
        assert self.swaps is not None
        epoch, _ = self.sampler.position(self.step)
        picks = [
            self.swaps.pick(int(i), c, np.random.default_rng([self.cfg.seed, epoch, int(i), 0x5A9]), self.cfg.swap_k)
            for i, c in zip(batch.indices.tolist(), batch.captions, strict=True)
        ]
        rows = [r for r, c in enumerate(picks) if c]
        if not rows:
            zero = loss.new_zeros(())
            return {"loss": loss, "loss_swap": zero}, None
        captions = [n for r in rows for n in picks[r]]
        negatives = self.model.encode_text(captions)
        owner = torch.tensor([h for h, r in enumerate(rows) for _ in picks[r]], device=self.device)
        term = swap_loss(
            self.model,
            text,
            negatives,
            owner,
            shapes,
            torch.tensor(rows, device=self.device),
            self.model.logit_scale_value(),
            self.cfg.fine_loss,
            self.cfg.fine_weight,
            self.model.fine_logit_scale_value(),
            global_weight=1.0 if self.cfg.swap_global else 0.0,
        )
        batch_rows = torch.tensor(rows, device=self.device)[owner]
        return {"loss": loss + self.cfg.swap_negatives * term, "loss_swap": term.detach()}, (
            negatives,
            batch_rows,
            captions,
        )

    def _ground_term(
        self, batch: Batch, text: Any, shapes: Any, loss: torch.Tensor, negatives: Any = None
    ) -> dict[str, torch.Tensor]:
        """The loss with the grounding term added (``loss``, ``loss_ground``; zero when no word names a part).

        With ``ground_swaps``, the words of the swap captions (``negatives`` from :meth:`_swap_term`) are
        grounded too: "no" in "no armrests" should look at the armrests the shape has, which is what lets
        the fine score lower a false "no armrests"; the term is then the mean over both sets of captions.
        """
        assert self.token_masks is not None and batch.point_attrs is not None and batch.attributes is not None
        points = normalize_batch(batch.points.float())
        ids = batch.indices.tolist()
        masks = [
            self.token_masks(i, cat, attrs, cap, words)
            for i, cat, attrs, cap, words in zip(
                ids, batch.categories, batch.attributes, batch.captions, text.words, strict=True
            )
        ]
        attention = self.model.haf.attention(text, shapes)
        terms = [grounding_loss(attention, shapes.centers, points, batch.point_attrs, masks)]
        if self.cfg.ground_swaps and negatives is not None and self.swaps is not None:
            feats, rows, captions = negatives
            own = rows.tolist()
            masks = [
                self.token_masks(ids[r], batch.categories[r], self.swaps.attributes(ids[r], cap), cap, words)
                for r, cap, words in zip(own, captions, feats.words, strict=True)
            ]
            shapes_of = shapes.select(rows)
            attention = self.model.haf.attention(feats, shapes_of)
            terms.append(grounding_loss(attention, shapes_of.centers, points[rows], batch.point_attrs[rows], masks))
        found = [t for t in terms if t is not None]
        zero = loss.new_zeros(())
        term = torch.stack(found).mean() if found else zero
        out = {"loss": loss + self.cfg.ground_weight * term, "loss_ground": term.detach()}
        if self.cfg.part_weight > 0:
            named = [
                {t: (mask, f"{cat}.{name}", attrs[name]) for t, (mask, name) in self._named(i, cat, attrs, cap, words)}
                for i, cat, attrs, cap, words in zip(
                    ids, batch.categories, batch.attributes, batch.captions, text.words, strict=True
                )
            ]
            part = part_readout_loss(
                self.model.haf, text.tokens, shapes.levels, shapes.centers, points, batch.point_attrs, named,
                self.model.fine_logit_scale_value(),
            )  # fmt: skip
            part = zero if part is None else part
            out = {"loss": out["loss"] + self.cfg.part_weight * part, "loss_ground": out["loss_ground"],
                   "loss_part": part.detach()}  # fmt: skip
        if self.cfg.part_swap_weight > 0:
            term = self._part_swap_term(batch, text, shapes, points, negatives) if negatives is not None else None
            term = zero if term is None else term
            out = {**out, "loss": out["loss"] + self.cfg.part_swap_weight * term, "loss_part_swap": term.detach()}
        return out

    def _part_swap_term(self, batch: Batch, text: Any, shapes: Any, points: torch.Tensor, negatives: Any) -> Any:
        """:func:`part_swap_loss` over the batch's swap captions: per (shape, swapped attribute), the words the
        true caption uses for it, then those of each swapped caption."""
        assert self.token_masks is not None and self.swaps is not None and batch.attributes is not None
        feats, rows, captions = negatives
        ids = batch.indices.tolist()
        sets: dict[tuple[int, str], list[torch.Tensor]] = {}
        for n, (b, cap) in enumerate(zip(rows.tolist(), captions, strict=True)):
            full, cat = batch.attributes[b], batch.categories[b]
            stated = self.swaps.attributes(ids[b], cap)
            name = next(k for k in stated if stated[k] != full[k])
            neg = [t for t, k in self.token_masks.names(ids[b], cat, stated, cap, feats.words[n]).items() if k == name]
            if not neg:
                continue
            if (b, name) not in sets:
                own = self.token_masks.names(ids[b], cat, full, batch.captions[b], text.words[b])
                true = [t for t, k in own.items() if k == name]
                if not true:
                    continue
                sets[b, name] = [text.tokens[b, true].mean(0)]
            sets[b, name].append(feats.tokens[n, neg].mean(0))
        if not sets:
            return None
        dev = points.device
        keys = list(sets)
        shape = torch.tensor([b for b, _ in keys], device=dev)
        bits = torch.tensor(
            [attribute_mask(batch.categories[b], k) for b, k in keys], device=dev, dtype=batch.point_attrs.dtype
        )
        words = torch.stack([w for key in keys for w in sets[key]])
        owner = torch.tensor([i for i, key in enumerate(keys) for _ in sets[key]], device=dev)
        return part_swap_loss(
            self.model.haf, shapes.levels, shapes.centers, points, batch.point_attrs, shape, bits, words, owner,
            self.model.fine_logit_scale_value(),
        )  # fmt: skip

    def _named(
        self, index: int, category: str, attrs: Any, caption: str, words: Any
    ) -> list[tuple[int, tuple[int, str]]]:
        """(token, (bit mask, attribute name)) of each token of a caption that names an attribute."""
        assert self.token_masks is not None
        names = self.token_masks.names(index, category, attrs, caption, words)
        return [(t, (attribute_mask(category, name), name)) for t, name in names.items()]

    # ------------------------------------------------------------------------------------------
    # checkpoints

    def save(self) -> Path | None:
        """Write a checkpoint of the current step (collective; rank 0 writes). Returns its folder on rank 0."""
        rng_tensors, rng_meta = ckpt.rng_state()
        per_rank = all_gather_list([(rng_tensors, rng_meta)])
        path = None
        if self.dist.is_main:
            path = ckpt.save_checkpoint(
                self.run_dir, self.step, lambda d: self._write(d, per_rank), self.cfg.keep_checkpoints
            )
        barrier()
        return path

    def _write(self, folder: Path, per_rank: list[tuple[dict[str, torch.Tensor], dict[str, Any]]]) -> None:
        self.model.save(folder, extra={"step": self.step})
        tensors, opt_meta = ckpt.optimizer_state(self.optimizer)
        if self.average is not None:
            tensors.update(self.average.state_tensors())
        rng_meta = {}
        for rank, (t, meta) in enumerate(per_rank):
            tensors.update({f"rank{rank}.{k}": v for k, v in t.items()})
            rng_meta[str(rank)] = meta
        epoch, batch = self.sampler.position(self.step)
        meta = {
            "step": self.step,
            "data_position": {"epoch": epoch, "batch": batch, "batches_per_epoch": self.sampler.batches_per_epoch},
            "samples_seen": self.step * self.cfg.batch_size * self.dist.world,
            "train_seconds": self.train_seconds,
            "warmup_seconds": self.warmup_seconds,
            "world_size": self.dist.world,
            "schedule": {
                "kind": "warmup_cosine",
                "lr": self.cfg.lr,
                "warmup_steps": self._warmup(),
                "total_steps": self.cfg.steps,
                "min_ratio": self.cfg.min_lr_ratio,
            },  # fmt: skip
            "optimizer": opt_meta,
            "rng": rng_meta,
            "callbacks": {_callback_name(cb): cb.state_dict() for cb in self.callbacks if hasattr(cb, "state_dict")},
            "train_config": self.cfg.to_dict(),
        }
        ckpt.write_trainer_state(folder, tensors, meta)

    def load(self, folder: Path) -> None:
        """Restore model, optimizer, RNG, callbacks and step from a checkpoint folder."""
        loaded = load_model(folder, map_location=self.device)
        if loaded.config.sha256() != self.model.config.sha256():
            raise IntegrityError(f"{folder}: the checkpoint's model config differs from this run's")
        self.model.load_checkpoint_state(loaded.checkpoint_state())
        del loaded
        tensors, meta = ckpt.read_trainer_state(folder)
        ckpt.load_optimizer_state(self.optimizer, tensors, meta["optimizer"])
        if self.average is not None:
            self.average.load_state_tensors(tensors, str(folder))
        self.step = int(meta["step"])
        self.train_seconds = float(meta.get("train_seconds", 0.0))
        ws = meta.get("warmup_seconds")
        self.warmup_seconds = None if ws is None else float(ws)
        if int(meta.get("world_size", 1)) != self.dist.world:
            raise BadInputError(
                f"{folder} was written by {meta.get('world_size')} processes; resume with the same number "
                f"(now {self.dist.world}) so that the global batch and data order stay the same"
            )
        prefix = f"rank{self.dist.rank}."
        ckpt.set_rng_state(
            {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}, meta["rng"][str(self.dist.rank)]
        )
        states = meta.get("callbacks", {})
        for cb in self.callbacks:
            if hasattr(cb, "load_state_dict") and _callback_name(cb) in states:
                cb.load_state_dict(states[_callback_name(cb)])
        self.log.truncate_after(self.step)
        if self.dist.is_main:
            record_resume(self.run_dir, self.data_hash, self.step, self.dist.world)
            print(f"resumed {self.run_dir} at step {self.step} from {folder.name}")

    # ------------------------------------------------------------------------------------------
    # the loop

    def _warmup(self) -> int:
        return min(self.cfg.warmup_steps, self.cfg.steps // 5)

    def _lr(self) -> float:
        """Learning rate of the step about to be taken (by step, or by the time budget's clock)."""
        cfg, warm = self.cfg, self._warmup()
        if cfg.time_budget_s <= 0 or self.step < warm:
            return lr_at(self.step, cfg.lr, warm, cfg.steps, cfg.min_lr_ratio)
        if self.warmup_seconds is None:
            self.warmup_seconds = self.train_seconds
        by_steps = (self.step - warm) / max(1, cfg.steps - warm)
        by_time = (self.train_seconds - self.warmup_seconds) / max(cfg.time_budget_s - self.warmup_seconds, 1e-9)
        span = 1_000_000  # the cosine on a fine grid of virtual steps
        progress = min(1.0, max(by_steps, by_time))
        return lr_at(warm + round(progress * span), cfg.lr, warm, warm + span, cfg.min_lr_ratio)

    def _out_of_time(self, step_seconds: float = 0.0) -> bool:
        """Whether the time budget is spent, or would be by one more step of ``step_seconds``."""
        return self.cfg.time_budget_s > 0 and self.train_seconds + step_seconds >= self.cfg.time_budget_s

    def log_event(self, kind: str, **fields: Any) -> None:
        """Append an event line (e.g. a DAP calibration) to the run's JSONL log (rank 0)."""
        self.log.write({"event": kind, "step": self.step, **fields})

    def fit(self) -> dict[str, Any]:
        """Train up to ``cfg.steps``; returns the last metrics, throughput and the final checkpoint."""
        cfg, start = self.cfg, self.step
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=self._sampler(start),
            collate_fn=collate,
            num_workers=cfg.workers,
        )
        global_batch = cfg.batch_size * self.dist.world
        bar = tqdm(total=cfg.steps, initial=start, disable=not (cfg.progress and self.dist.is_main), unit="step")
        t_start = time.perf_counter()
        t_window, window_steps, shapes_per_s = t_start, 0, 0.0
        seconds_before = self.train_seconds
        last_ckpt: Path | None = None
        batches = iter(loader)
        try:
            done = self._out_of_time()
            while self.step < cfg.steps and not done:
                batch = next(batches).to(self.device)
                lr = self._lr()
                set_lr(self.optimizer, lr)
                stats = self.train_step(batch)
                self.step += 1
                window_steps += 1
                elapsed = torch.tensor(seconds_before + time.perf_counter() - t_start, dtype=torch.float64)
                self.train_seconds = float(all_reduce_mean(elapsed)) if self.dist.world > 1 else float(elapsed)
                per_step = (self.train_seconds - seconds_before) / (self.step - start)
                done = self.step == cfg.steps or self._out_of_time(per_step)
                if self.step % cfg.log_every == 0 or done:
                    now = time.perf_counter()
                    shapes_per_s = window_steps * global_batch / max(now - t_window, 1e-9)
                    t_window, window_steps = now, 0
                    for k in (
                        "loss",
                        "loss_global",
                        "loss_fine",
                        "loss_swap",
                        "loss_ground",
                        "loss_part",
                        "loss_part_swap",
                    ):
                        if k in stats:
                            stats[k] = float(all_reduce_mean(torch.tensor(stats[k], device=self.device)))
                    epoch, _ = self.sampler.position(self.step - 1)
                    self.metrics = {
                        **stats,
                        "lr": lr,
                        "logit_scale": float(self.model.logit_scale_value().detach()),
                        "shapes_per_s": shapes_per_s,
                        "epoch": epoch,
                    }
                    self.log.write({"step": self.step, **self.metrics})
                    bar.set_postfix(loss=f"{stats['loss']:.3f}", shapes_s=f"{shapes_per_s:.0f}")
                bar.update(1)
                for cb in self.callbacks:
                    cb.on_step_end(self.step, self)
                if self.step % cfg.ckpt_every == 0 or done:
                    last_ckpt = self.save()
        finally:
            bar.close()
        if self.average is not None:
            self.average.copy_to_model()  # the run ends with the averaged weights (checkpoints keep both)
        if self.dist.is_main:
            self.model.save(self.run_dir, extra={"step": self.step})  # the final model: load_model(RUN)
        barrier()
        seconds = time.perf_counter() - t_start
        steps_run = self.step - start
        return {
            "run": str(self.run_dir),
            "step": self.step,
            "steps_run": steps_run,
            "seconds": seconds,
            "train_seconds": self.train_seconds,
            "stopped_by": "time" if self.step < cfg.steps else "steps",
            "prefill_seconds": self.prefill_seconds,
            "shapes_per_s": steps_run * global_batch / seconds if steps_run and seconds > 0 else 0.0,
            "checkpoint": str(last_ckpt or ckpt.latest_checkpoint(self.run_dir) or ""),
            **{k: v for k, v in self.metrics.items() if k.startswith("loss")},
        }


def build_trainer(cfg: TrainConfig, callbacks: list[Callback] | None = None) -> Trainer:
    """The :class:`Trainer` that :func:`train` runs: ``callbacks`` plus, in ``haf`` mode with ``cfg.dap``
    set, a :class:`DAPCallback` that calibrates the attention policy every ``cfg.dap_every`` steps."""
    callbacks = list(callbacks or [])
    if cfg.dap and cfg.mode == "haf":
        from daer.train.dap_callback import DAPCallback

        counts = read_manifest(cfg.data).get("counts", {})
        if cfg.dap_every <= cfg.steps and not counts.get("val"):
            raise BadInputError(
                f"{cfg.data} has no 'val' shapes (splits: {counts}), and DAP calibrates the attention policy on "
                f"them at step {cfg.dap_every}. Train with --no-dap, or give some shapes split 'val' (an import "
                "CSV without a split column gets a seeded 80/10/10 split)."
            )

        callbacks.append(
            DAPCallback(
                cfg.data,
                every=cfg.dap_every,
                simulations=cfg.dap_sims,
                alpha=cfg.dap_alpha,
                seed=cfg.seed,
                reuse=cfg.dap_reuse,
            )
        )
    return Trainer(cfg, callbacks=callbacks)


def train(cfg: TrainConfig, callbacks: list[Callback] | None = None) -> dict[str, Any]:
    """Train (or resume) the run ``cfg`` describes; returns the summary of :meth:`Trainer.fit`.

    In ``haf`` mode with ``cfg.dap`` set, a :class:`DAPCallback` calibrates the attention policy
    every ``cfg.dap_every`` steps.
    """
    return build_trainer(cfg, callbacks).fit()
