"""Model configuration: one dataclass, one JSON file per named size (``tiny``, ``small``, ``base``)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from daer.errors import BadInputError

CONFIG_NAMES: tuple[str, ...] = ("tiny", "small", "base")
MINILM_NAME = "all-MiniLM-L6-v2"
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


# Fields added after checkpoints were saved, with the value that reproduces those checkpoints: left out of
# the config hash at that value, so saved models (the packaged one included) keep loading.
ADDED_FIELDS: dict[str, Any] = {"text_phrase_tokens": False, "local_position": True}


@dataclass
class ModelConfig:
    """Everything that fixes a model's architecture and initial HAF policy.

    The point hierarchy has three token levels: level 1 = local patches (mini-PointNet over kNN groups
    of input points), level 2 = parts (groups of patches), level 3 = object tokens (groups of the
    transformer outputs over parts). ``level_sizes[l]`` centres are picked by farthest-point sampling
    among the previous level's positions and each takes its ``level_k[l]`` nearest neighbours there.
    """

    name: str = "small"  # config name, recorded with every run
    mode: str = "haf"  # "haf": global + fine HAF score; "global": global cosine only (ULIP/OpenShape baseline)
    embed_dim: int = 256  # D: width of the shared text/point embedding space (tokens and global)

    # --- point encoder ---
    n_points: int = 2048  # points per shape fed to the encoder
    level_sizes: list[int] = field(default_factory=lambda: [128, 32, 8])  # tokens per level: patches, parts, objects
    level_k: list[int] = field(default_factory=lambda: [32, 8, 8])  # kNN group size per level
    patch_mlp: list[int] = field(default_factory=lambda: [32, 64])  # mini-PointNet hidden widths over patch points
    patch_width: int = 128  # width of level-1 patch tokens
    point_width: int = 192  # width of part tokens and of the transformer
    depth: int = 2  # transformer blocks over part tokens
    heads: int = 4  # attention heads of that transformer
    mlp_ratio: float = 2.0  # transformer MLP hidden width / point_width
    dropout: float = 0.0  # dropout in the point transformer
    point_context: bool = False  # True: HAF reads in-context part tokens (measured worse than local ones)
    local_position: bool = True  # patch and part tokens carry an absolute-position embedding; False: local
    # geometry only (relative coordinates), the position joining at the transformer's input

    # --- text encoder ---
    text_encoder: str = MINILM_NAME  # "all-MiniLM-L6-v2" (packaged, offline), "tiny" (from scratch) or a HF folder
    text_encoder_sha256: str | None = None  # expected model.safetensors hash; None = MiniLM's or learnt on creation
    text_max_tokens: int = 32  # captions are truncated to this many word pieces (incl. [CLS]/[SEP])
    text_finetune_layers: int = 0  # train the last N layers of a HF encoder (0 = frozen, features cached)
    text_content_words: bool = True  # HAF scores content words only (no articles, fillers, punctuation, ##pieces)
    text_phrase_tokens: bool = False  # HAF's word features come from each phrase encoded alone (HF encoders)
    tiny_vocab: int = 4096  # tiny text encoder: hashed word vocabulary size
    tiny_width: int = 128  # tiny text encoder: transformer width
    tiny_depth: int = 2  # tiny text encoder: transformer blocks
    tiny_heads: int = 4  # tiny text encoder: attention heads

    # --- Hierarchical Attention Fusion ---
    haf_dim: int = 64  # width of the per-level query/key space of the token-to-point attention
    haf_readout: str = "value"  # "value": value projection + expectation + word-gated evidence; "cosine": plain
    init_tau: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])  # initial attention temperature per level
    init_level_weight: list[float] = field(
        default_factory=lambda: [1 / 3, 1 / 3, 1 / 3]
    )  # initial w_l (fine = Σ w_l S_l)
    init_mix: float = 0.5  # initial share of the fine score in the final score
    haf_chunk: int = 1 << 20  # max elements of one (texts × tokens × shapes × points) attention block (cache-sized)

    # --- contrastive head ---
    logit_scale_init: float = 1 / 0.07  # initial learnable temperature (as a multiplier of the cosine)
    logit_scale_max: float = 100.0  # the multiplier is clamped at this value

    @property
    def n_levels(self) -> int:
        """Number of token levels (L)."""
        return len(self.level_sizes)

    def __post_init__(self) -> None:
        self.level_sizes = [int(v) for v in self.level_sizes]
        self.level_k = [int(v) for v in self.level_k]
        self.patch_mlp = [int(v) for v in self.patch_mlp]
        self.init_tau = [float(v) for v in self.init_tau]
        self.init_level_weight = [float(v) for v in self.init_level_weight]
        self.validate()

    def validate(self) -> None:
        """Raise BadInputError naming the first inconsistent field."""

        def bad(msg: str) -> BadInputError:
            return BadInputError(f"model config {self.name!r}: {msg}")

        if self.mode not in ("haf", "global"):
            raise bad(f"mode must be 'haf' or 'global', got {self.mode!r}")
        if self.haf_readout not in ("value", "cosine"):
            raise bad(f"haf_readout must be 'value' or 'cosine', got {self.haf_readout!r}")
        if len(self.level_sizes) != 3 or len(self.level_k) != 3:
            raise bad("level_sizes and level_k need exactly 3 entries (patches, parts, objects)")
        prev = self.n_points
        for lvl, (m, k) in enumerate(zip(self.level_sizes, self.level_k, strict=True), start=1):
            if not 1 <= m <= prev:
                raise bad(f"level {lvl} size {m} must be in 1..{prev} (the previous level's size)")
            if not 1 <= k <= prev:
                raise bad(f"level {lvl} k={k} must be in 1..{prev}")
            prev = m
        for name in ("embed_dim", "patch_width", "point_width", "depth", "heads", "haf_dim", "text_max_tokens"):
            if int(getattr(self, name)) < 1:
                raise bad(f"{name} must be >= 1")
        if not self.patch_mlp:
            raise bad("patch_mlp needs at least one width")
        if self.point_width % self.heads:
            raise bad(f"point_width {self.point_width} is not divisible by heads {self.heads}")
        if self.tiny_width % self.tiny_heads:
            raise bad(f"tiny_width {self.tiny_width} is not divisible by tiny_heads {self.tiny_heads}")
        if self.text_finetune_layers < 0:
            raise bad("text_finetune_layers must be >= 0")
        if self.text_phrase_tokens and self.text_finetune_layers:
            raise bad("text_phrase_tokens needs text_finetune_layers 0 (phrases are encoded by the frozen encoder)")
        if len(self.init_tau) != 3 or any(not (t > 0 and math.isfinite(t)) for t in self.init_tau):
            raise bad("init_tau needs 3 positive finite values")
        if len(self.init_level_weight) != 3 or any(not (w >= 0 and math.isfinite(w)) for w in self.init_level_weight):
            raise bad("init_level_weight needs 3 non-negative finite values")
        if not 0.0 <= self.init_mix <= 1.0:
            raise bad("init_mix must be in [0, 1]")
        if not 0 < self.logit_scale_init <= self.logit_scale_max:
            raise bad("need 0 < logit_scale_init <= logit_scale_max")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field."""
        return dataclasses.asdict(self)

    def sha256(self) -> str:
        """Hash of the canonical JSON of every field (checked when a checkpoint is loaded); a field added after
        checkpoints existed (:data:`ADDED_FIELDS`) counts only where it differs from the value those have."""
        fields = {k: v for k, v in self.to_dict().items() if k not in ADDED_FIELDS or v != ADDED_FIELDS[k]}
        blob = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()

    @classmethod
    def from_dict(cls, d: dict[str, Any], **overrides: Any) -> ModelConfig:
        """Build from a dict; unknown keys are refused so a typo never passes silently."""
        known = {f.name for f in dataclasses.fields(cls)}
        merged = {**d, **overrides}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise BadInputError(f"unknown model config field(s): {', '.join(unknown)}")
        return cls(**merged)


def load_config(name_or_path: str | os.PathLike[str] | ModelConfig, **overrides: Any) -> ModelConfig:
    """Read a named config (``tiny``, ``small``, ``base``) or a JSON file, then apply overrides.

    A checkpoint's ``config.json`` (which nests the fields under ``"config"``) is accepted too.
    """
    if isinstance(name_or_path, ModelConfig):
        return ModelConfig.from_dict(name_or_path.to_dict(), **overrides)
    name = str(name_or_path)
    if name in CONFIG_NAMES:
        text = resources.files("daer").joinpath("configs", f"{name}.json").read_text(encoding="utf-8")
        where = f"built-in config {name!r}"
    else:
        path = Path(name)
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise BadInputError(f"no model config named {name!r} (known: {', '.join(CONFIG_NAMES)}) and no file there")
        text = path.read_text(encoding="utf-8")
        where = str(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadInputError(f"{where}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise BadInputError(f"{where}: expected a JSON object")
    if isinstance(data.get("config"), dict):
        data = data["config"]
    return ModelConfig.from_dict(data, **overrides)
