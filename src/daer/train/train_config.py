"""Training configuration: one dataclass, saved resolved with every run and checked on resume."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daer.errors import BadInputError

TRAIN_CONFIG = "train_config.json"

# Fields that may change when a run is resumed; every other field defines the run.
RESUMABLE_CHANGES: frozenset[str] = frozenset(
    {"steps", "resume", "ckpt_every", "keep_checkpoints", "log_every", "progress", "workers", "dap", "dap_every",
     "dap_sims", "dap_alpha", "dap_reuse", "device", "time_budget_s"}
)  # fmt: skip

# Fields added after runs existed, with the value that reproduces a run whose saved config lacks them
# (a resumed old run must not switch on what it was not trained with).
OFF_WHEN_ABSENT: dict[str, Any] = {
    "part_drop": 0.0, "part_drop_absent": False, "part_drop_optional": False, "part_drop_within": False,
    "text_noise": 0.0, "part_swap": 0.0, "part_drop_generic": False, "text_lr_scale": 1.0,
    "stretch": 0.0, "weight_average": 0.0,
}  # fmt: skip


@dataclass
class TrainConfig:
    """Everything that defines a training run (the CLI fills it; saved as ``train_config.json``)."""

    data: str = ""  # data set folder (shards + manifest.json)
    out: str = ""  # run folder: config, log, checkpoints, final model
    config: str = "small"  # named model config (tiny, small, base) or a config JSON path
    mode: str = "haf"  # "haf" (global + fine HAF loss) or "global" (global InfoNCE only, the baseline)
    steps: int = 1000  # optimizer steps in the whole run (the cosine schedule ends here)
    time_budget_s: float = 0.0  # wall-clock budget of the training loop (0: off); see below
    batch_size: int = 64  # shapes per step per process; the global batch is batch_size x world
    batch_categories: int = 0  # 0: random batches; k: each global batch is k single-category chunks (hard negatives)
    lr: float = 2e-3  # peak learning rate (after warm-up); 2e-3 beat 1e-3 and 5e-4 in small-config pilots
    weight_decay: float = 0.05  # AdamW decay on weight matrices (not on biases, norms, scales, policy)
    warmup_steps: int = 100  # linear warm-up steps (capped at steps // 5)
    min_lr_ratio: float = 0.1  # the cosine decays to this fraction of lr
    grad_clip: float = 1.0  # max global gradient norm (0 disables clipping)
    weight_average: float = 0.995  # > 0: the run ends with a moving average of its weights (this decay); 0: off
    fine_weight: float = 1.0  # weight of the fine HAF InfoNCE term (haf mode)
    fine_loss: str = "levels"  # "levels": one InfoNCE per HAF level, averaged; "fused": on Σ_l w_l·S_l
    fine_negatives: int = 0  # 0: fine InfoNCE over the whole batch; k: over the k hardest by global score
    swap_negatives: float = 1.0  # weight of the attribute-swap caption loss (Align3D-Synth only; 0: off)
    swap_k: int = 4  # swapped captions per training caption in that loss (a (1 + k)-way choice)
    swap_scope: str = "train"  # which swaps: "train" (full combination trained), "stated", "free" (any value)
    swap_global: bool = True  # the swap loss also trains the global score (False: the fine path only, haf mode)
    ground_swaps: bool = False  # also ground the words of attribute-swap captions (a word looks at what it names)
    ground_weight: float = 0.5  # grounding loss on part-labelled shapes (haf mode; 0: off); 0.3 and 1 screened
    part_weight: float = 0.0  # part read-out loss: a named word matches its labelled part's local values (haf)
    part_swap_weight: float = 0.0  # the swap choice made by the named part's local values alone (haf, swaps on)
    part_drop: float = 0.5  # chance a training shape loses one labelled part, captioned by what is left (Synth)
    part_drop_absent: bool = False  # a wholly dropped part is captioned by its absent value ("no armrests")
    part_drop_optional: bool = True  # drop only optional parts (armrests, a chimney), captioned absent
    part_drop_generic: bool = False  # a view that lost a part its category needs is captioned without its name
    part_drop_within: bool = False  # a view that lost a part its category needs is contrasted within its category
    part_swap: float = 0.0  # chance a training shape takes one labelled part from a shape of its category (Synth)
    text_noise: float = 0.05  # std of Gaussian noise on the text features before projection (a ridge on them)
    text_lr_scale: float = 0.05  # pretrained text layers trained (text_finetune_layers) at lr x this
    stretch: float = 0.0  # each axis of a training shape scaled by a factor in [1 - s, 1 + s] (proportions vary)
    ckpt_every: int = 200  # checkpoint every N steps (and at the end)
    keep_checkpoints: int = 2  # complete checkpoints kept in the run folder
    log_every: int = 10  # JSONL log line every N steps
    seed: int = 0  # model init, data order, caption choice, augmentation
    bf16: bool = False  # bfloat16 autocast for the forward pass
    augment: bool = True  # yaw rotation, isotropic scale and jitter of training shapes
    workers: int = 0  # DataLoader worker processes (0: load in the training process)
    device: str | None = None  # "cpu", "cuda", or None for CUDA when available
    text_encoder: str | None = None  # Hugging Face encoder folder replacing the config's text encoder
    resume: bool = False  # continue from the run folder's newest checkpoint
    progress: bool = True  # tqdm progress bar on rank 0
    dap: bool = True  # calibrate the HAF policy with DAP during training (haf mode only)
    dap_every: int = 500  # steps between DAP calibrations
    dap_sims: int = 64  # MCTS simulations per calibration
    dap_alpha: float = 0.5  # DAP reward: alpha * loss drop + (1 - alpha) * mean(R@1 t2s, R@1 s2t, zero-shot)
    dap_reuse: float = 0.0  # > 0: each calibration carries the last one's MCTS tree over, statistics x this
    text_prefill: bool = True  # encode every training caption once, batched, before step 1 (fills the cache)
    model_overrides: dict[str, Any] = field(default_factory=dict)  # extra ModelConfig fields

    # time_budget_s > 0: the run stops when its training loop (steps, callbacks, checkpoints, summed
    # over resumes) has used this many seconds, or at ``steps``, whichever comes first; after the
    # warm-up the cosine follows max(step progress, time progress), so it ends on time whatever the
    # machine's speed. Such a run is not bit-reproducible (the schedule depends on the clock).

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise BadInputError naming the first bad field."""
        if self.mode not in ("haf", "global"):
            raise BadInputError(f"--mode must be 'haf' or 'global', got {self.mode!r}")
        for name in ("steps", "batch_size", "ckpt_every", "log_every", "keep_checkpoints", "dap_every", "dap_sims",
                     "swap_k"):  # fmt: skip
            if int(getattr(self, name)) < 1:
                raise BadInputError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "workers", "batch_categories", "fine_negatives"):
            if int(getattr(self, name)) < 0:
                raise BadInputError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.swap_global and self.mode != "haf":
            raise BadInputError("swap_global=false leaves the swap loss to HAF's fine path: it needs mode haf")
        if self.swap_scope not in ("train", "stated", "free"):
            raise BadInputError(f"swap_scope must be 'train', 'stated' or 'free', got {self.swap_scope!r}")
        if self.fine_loss not in ("levels", "fused"):
            raise BadInputError(f"fine_loss must be 'levels' or 'fused', got {self.fine_loss!r}")
        if not self.time_budget_s >= 0:
            raise BadInputError(f"time_budget_s must be >= 0, got {self.time_budget_s}")
        if not self.lr > 0:
            raise BadInputError(f"lr must be > 0, got {self.lr}")
        weights = (self.weight_decay, self.grad_clip, self.fine_weight, self.swap_negatives, self.ground_weight,
                   self.part_weight, self.part_swap_weight)  # fmt: skip
        if min(weights) < 0:
            raise BadInputError(
                "weight_decay, grad_clip, fine_weight, swap_negatives and the ground/part weights must be >= 0"
            )
        if not 0.0 <= self.weight_average < 1.0:
            raise BadInputError(f"weight_average (a decay) must be in [0, 1), got {self.weight_average}")
        if not 0.0 <= self.stretch <= 0.5:
            raise BadInputError(f"stretch must be in [0, 0.5], got {self.stretch}")
        if not 0.0 < self.text_lr_scale <= 1.0:
            raise BadInputError(f"text_lr_scale must be in (0, 1], got {self.text_lr_scale}")
        if not 0.0 <= self.text_noise < float("inf"):
            raise BadInputError(f"text_noise must be a finite value >= 0, got {self.text_noise}")
        for name in ("part_drop", "part_swap", "dap_reuse"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise BadInputError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise BadInputError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], **overrides: Any) -> TrainConfig:
        """Build from a dict plus overrides; unknown keys are refused."""
        known = {f.name for f in dataclasses.fields(cls)}
        merged = {**d, **overrides}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise BadInputError(f"unknown training config field(s): {', '.join(unknown)}")
        return cls(**merged)

    @classmethod
    def load(cls, run_dir: str | os.PathLike[str], **overrides: Any) -> TrainConfig:
        """The resolved config a run folder was started with, plus overrides."""
        path = Path(run_dir) / TRAIN_CONFIG
        if not path.is_file():
            raise BadInputError(f"{path}: missing; {run_dir} is not a daer training run")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise BadInputError(f"{path}: unreadable ({e})") from e
        if not isinstance(data, dict):
            raise BadInputError(f"{path}: not a JSON object")
        return cls.from_dict({**OFF_WHEN_ABSENT, **data}, **overrides)

    def resume_conflicts(self, saved: TrainConfig) -> list[str]:
        """Run-defining fields where this config differs from the run's saved one (``name: saved -> now``)."""
        out = []
        for f in dataclasses.fields(self):
            if f.name in RESUMABLE_CHANGES or f.name in ("data", "out"):
                continue
            a, b = getattr(saved, f.name), getattr(self, f.name)
            if a != b:
                out.append(f"{f.name}: {a!r} -> {b!r}")
        return out
