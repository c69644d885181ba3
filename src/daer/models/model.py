"""The two-tower model: point encoder + text encoder + HAF, with scores, explanations and checkpoints."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from daer.data.sampling import normalize_unit_sphere
from daer.errors import BadInputError, DaerError, IntegrityError
from daer.models.config import MINILM_NAME, MINILM_SHA256, ModelConfig, load_config
from daer.models.haf import HierarchicalAttentionFusion
from daer.models.point_encoder import PointEncoder, PointFeatures
from daer.models.pointops import PointGroups, knn, normalize_batch
from daer.models.text_cache import TextFeatureCache
from daer.models.text_encoder import TextFeatures, build_text_encoder, resolve_text_encoder_dir, verify_text_encoder
from daer.utils.atomic import atomic_path, write_json
from daer.utils.hashing import sha256_file

CHECKPOINT_FORMAT = 2  # 2: HAF value readout, point context, content words (format 1: retrain)
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


@dataclass
class Explanation:
    """Where each word of a caption looks on a shape.

    Attributes:
        text: the caption.
        words: its T token strings.
        attention: per level (T, N_l) attention of each token over that level's tokens (rows sum to 1).
        centers: per level (N_l, 3) positions of those tokens.
        points: (N, 3) the input points, normalised to the unit sphere as the model saw them.
        point_attention: (T, N) per input point, each level's attention of its nearest token centre times
            N_l (1 = uniform attention), averaged over levels with the policy's level weights.
        token_weights: (T,) importance of each token in the fine score.
        level_scores: (L,) HAF score per level.
        score: the final (fused) score of caption and shape.
    """

    text: str
    words: list[str]
    attention: list[np.ndarray]
    centers: list[np.ndarray]
    points: np.ndarray
    point_attention: np.ndarray
    token_weights: np.ndarray
    level_scores: np.ndarray
    score: float


class DaerModel(nn.Module):
    """Two towers aligned in one embedding space; in mode ``haf`` a fine token-to-point score on top.

    Args:
        config: the resolved model config.
        text_cache: cache for frozen text features (default file when None; unused by the tiny encoder).
    """

    def __init__(self, config: ModelConfig, text_cache: TextFeatureCache | None = None) -> None:
        super().__init__()
        self.config = config
        self.points = PointEncoder(config)
        self.text = build_text_encoder(config, cache=text_cache)
        self.haf = (
            HierarchicalAttentionFusion(
                config.embed_dim,
                config.n_levels,
                config.haf_dim,
                config.init_tau,
                config.init_level_weight,
                config.init_mix,
                chunk=config.haf_chunk,
                readout=config.haf_readout,
            )
            if config.mode == "haf"
            else None
        )
        # Stored as a log, as in CLIP; logit_scale_value() gives the clamped multiplier.
        self.logit_scale = nn.Parameter(torch.tensor(math.log(config.logit_scale_init)))
        # The fine score has its own range (a weighted sum of cosines and evidence): its own temperature.
        self.fine_logit_scale = (
            nn.Parameter(torch.tensor(math.log(config.logit_scale_init))) if self.haf is not None else None
        )

    @property
    def device(self) -> torch.device:
        """Where the parameters live."""
        return self.logit_scale.device

    # --- encoders ---
    def encode_text(self, captions: list[str]) -> TextFeatures:
        """Encode captions into tokens (B, T, D) and a normalised global (B, D)."""
        return self.text(list(captions))

    def encode_points(self, points: Tensor, groups: PointGroups | None = None) -> PointFeatures:
        """Encode point clouds (B, N, 3), optionally with cached FPS/kNN groups.

        Each cloud is centred and scaled to the unit sphere first (FPS/kNN groups do not change under
        that), so raw clouds in any units rank as their normalised copies do.
        """
        if points.dim() != 3 or points.shape[-1] != 3:
            raise BadInputError(f"expected points of shape (B, N, 3), got {tuple(points.shape)}")
        if not bool(torch.isfinite(points).all()):
            raise BadInputError("points contain NaN or infinite coordinates")
        return self.points(normalize_batch(points.to(self.device, torch.float32)), groups)

    def precompute_groups(self, points: Tensor | np.ndarray) -> PointGroups:
        """FPS/kNN groups of one shape (N, 3) or a batch (B, N, 3) at this model's level sizes."""
        from daer.models.pointops import precompute_groups

        return precompute_groups(points, self.config.level_sizes, self.config.level_k)

    # --- scores ---
    def logit_scale_value(self) -> Tensor:
        """The contrastive temperature multiplier, exp(logit_scale) clamped at ``logit_scale_max``."""
        return self.logit_scale.exp().clamp(max=self.config.logit_scale_max)

    def fine_logit_scale_value(self) -> Tensor | None:
        """The fine term's multiplier (clamped like :meth:`logit_scale_value`); None in mode global."""
        if self.fine_logit_scale is None:
            return None
        return self.fine_logit_scale.exp().clamp(max=self.config.logit_scale_max)

    def global_scores(self, text: TextFeatures, shapes: PointFeatures) -> Tensor:
        """Global cosine of every text with every shape, (Bt, Bs)."""
        return text.global_ @ shapes.global_.T

    def fine_scores(self, text: TextFeatures, shapes: PointFeatures) -> Tensor:
        """HAF fine score Σ_l w_l·S_l of every text with every shape, (Bt, Bs) (mode ``haf`` only)."""
        return self._haf().fine(self._haf().level_scores(text, shapes))

    def score(self, text: TextFeatures, shapes: PointFeatures) -> Tensor:
        """Final score of every text with every shape, (Bt, Bs): global cosine, fused with HAF in mode haf."""
        g = self.global_scores(text, shapes)
        if self.haf is None:
            return g
        return self.haf.fuse(self.haf.level_scores(text, shapes), g)

    def _haf(self) -> HierarchicalAttentionFusion:
        if self.haf is None:
            raise DaerError("this model was built in mode 'global': it has no HAF attention or fine score")
        return self.haf

    def forward(
        self,
        points: Tensor,
        captions: list[str] | TextFeatures,
        groups: PointGroups | None = None,
        fine: bool = True,
    ) -> dict[str, Any]:
        """Encode a batch of aligned pairs for the loss.

        Returns:
            ``shape_global`` (B, D), ``text_global`` (B, D), ``logit_scale`` (), ``shape_features``
            (PointFeatures), ``text_features`` (TextFeatures) and, in mode haf when ``fine``,
            ``fine_scores`` (B, B): in-batch Σ_l w_l·S_l with texts as rows and shapes as columns.
        """
        shapes = self.encode_points(points, groups)
        text = captions if isinstance(captions, TextFeatures) else self.encode_text(captions)
        if len(text) != len(shapes):
            raise BadInputError(f"forward needs as many captions as shapes ({len(text)} vs {len(shapes)})")
        out: dict[str, Any] = {
            "shape_global": shapes.global_,
            "text_global": text.global_,
            "logit_scale": self.logit_scale_value(),
            "shape_features": shapes,
            "text_features": text,
        }
        if self.haf is not None and fine:
            out["fine_scores"] = self.fine_scores(text, shapes)
        return out

    # --- explanation ---
    @torch.no_grad()
    def explain(self, text: str, points: np.ndarray) -> Explanation:
        """Each word's attention over the shape's tokens at every level, and mapped back onto the points.

        Args:
            text: one caption.
            points: (N, 3) points of one shape (normalised here to the unit sphere).
        """
        haf = self._haf()
        pts = normalize_unit_sphere(np.asarray(points))
        need = max(self.config.level_sizes[0], self.config.level_k[0])
        if len(pts) < need:
            raise BadInputError(f"explain needs at least {need} points, got {len(pts)}")
        was_training = self.training
        self.eval()
        try:
            p = torch.from_numpy(pts)[None].to(self.device)  # (1, N, 3)
            shapes = self.encode_points(p)
            tf = self.encode_text([text])
            attn = [a[0] for a in haf.attention(tf, shapes)]  # per level (T, N_l)
            levels = haf.paired_level_scores(tf, shapes)  # (1, L)
            score = haf.fuse(levels, (tf.global_ * shapes.global_).sum(-1))
            weights = haf.level_weight.clamp_min(0)
            weights = weights / weights.sum() if float(weights.sum()) > 0 else torch.full_like(weights, 1 / len(attn))
            point_attn = torch.zeros(attn[0].shape[0], len(pts), device=p.device)
            for a, c, w in zip(attn, shapes.centers, weights, strict=True):
                nearest = knn(p, c, 1)[0, :, 0]  # (N,) index of each point's nearest token centre
                point_attn += w * a[:, nearest] * a.shape[1]
            return Explanation(
                text=text,
                words=tf.words[0],
                attention=[a.cpu().numpy() for a in attn],
                centers=[c[0].cpu().numpy() for c in shapes.centers],
                points=pts,
                point_attention=point_attn.cpu().numpy(),
                token_weights=haf.token_weights(tf)[0].cpu().numpy(),
                level_scores=levels[0].cpu().numpy(),
                score=float(score[0]),
            )
        finally:
            self.train(was_training)

    # --- checkpoints ---
    def _frozen_keys(self) -> set[str]:
        prefixes = tuple("text." + p for p in self.text.frozen_prefixes())
        return {k for k in self.state_dict() if prefixes and k.startswith(prefixes)}

    def checkpoint_state(self) -> dict[str, Tensor]:
        """Every weight and buffer except frozen pretrained text weights (those reload from their package)."""
        frozen = self._frozen_keys()
        return {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items() if k not in frozen}

    def load_checkpoint_state(self, state: dict[str, Tensor]) -> None:
        """Load what :meth:`checkpoint_state` gave; a missing, extra or misshaped tensor is an IntegrityError."""
        own = self.state_dict()
        expected = set(own) - self._frozen_keys()
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or extra:
            raise IntegrityError(
                f"checkpoint tensors do not fit the model: missing {missing[:5]}, unexpected {extra[:5]}"
            )
        for k, v in state.items():
            if tuple(v.shape) != tuple(own[k].shape):
                raise IntegrityError(
                    f"checkpoint tensor {k} has shape {tuple(v.shape)}, model needs {tuple(own[k].shape)}"
                )
        self.load_state_dict(state, strict=False)

    def save(self, run_dir: str | os.PathLike[str], extra: dict[str, Any] | None = None) -> Path:
        """Write ``model.safetensors`` then ``config.json`` into ``run_dir``, each atomically.

        The config file carries the config hash and the weights' SHA-256, so a crash between the two
        writes, or any later damage, is caught by :func:`load_model`.
        """
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg_hash = self.config.sha256()
        weights = run_dir / WEIGHTS_FILE
        with atomic_path(weights) as tmp:
            save_file(
                self.checkpoint_state(),
                str(tmp),
                metadata={"daer_format": str(CHECKPOINT_FORMAT), "config_sha256": cfg_hash},
            )
        doc: dict[str, Any] = {
            "format_version": CHECKPOINT_FORMAT,
            "config": self.config.to_dict(),
            "config_sha256": cfg_hash,
            "weights_sha256": sha256_file(weights),
            "policy": self.haf.get_policy() if self.haf is not None else None,
        }
        if extra:
            doc["extra"] = extra
        write_json(run_dir / CONFIG_FILE, doc)
        return run_dir


def create_model(
    name_or_config: str | os.PathLike[str] | ModelConfig, text_cache: TextFeatureCache | None = None, **overrides: Any
) -> DaerModel:
    """A fresh model from a named config (``tiny``, ``small``, ``base``), a JSON file or a ModelConfig.

    The text encoder's weight hash is pinned in the returned model's config, so a saved model only
    reloads with the same encoder.
    """
    cfg = load_config(name_or_config, **overrides)
    if cfg.text_encoder != "tiny" and cfg.text_encoder_sha256 is None:
        if cfg.text_encoder == MINILM_NAME:
            sha = MINILM_SHA256
        else:
            sha = verify_text_encoder(resolve_text_encoder_dir(cfg.text_encoder), None)
        cfg = load_config(cfg, text_encoder_sha256=sha)
    return DaerModel(cfg, text_cache=text_cache)


def load_model(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu", text_cache: TextFeatureCache | None = None
) -> DaerModel:
    """Load a model saved by :meth:`DaerModel.save` (a run folder or its ``model.safetensors``), in eval mode.

    Raises:
        BadInputError: nothing there.
        IntegrityError: damaged or mismatched files (bad JSON, hash mismatch, wrong tensors, newer format).
    """
    path = Path(path)
    run_dir = path.parent if path.is_file() else path
    weights, cfg_file = run_dir / WEIGHTS_FILE, run_dir / CONFIG_FILE
    if not weights.is_file() and not cfg_file.is_file():
        raise BadInputError(f"no checkpoint at {path} (expected {WEIGHTS_FILE} and {CONFIG_FILE})")
    for f in (weights, cfg_file):
        if not f.is_file():
            raise IntegrityError(f"checkpoint {run_dir} is incomplete: {f.name} is missing")
    try:
        doc = json.loads(cfg_file.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
            raise ValueError("no 'config' object")
    except (ValueError, UnicodeDecodeError) as e:
        raise IntegrityError(f"{cfg_file}: not a daer checkpoint config ({e})") from e
    version = doc.get("format_version")
    if version != CHECKPOINT_FORMAT:
        raise IntegrityError(f"{cfg_file}: checkpoint format {version!r}, this daer reads format {CHECKPOINT_FORMAT}")
    try:
        cfg = ModelConfig.from_dict(doc["config"])
    except (BadInputError, TypeError) as e:
        raise IntegrityError(f"{cfg_file}: invalid model config ({e})") from e
    if cfg.sha256() != doc.get("config_sha256"):
        raise IntegrityError(f"{cfg_file}: config does not match its recorded hash (edited or damaged)")
    if sha256_file(weights) != doc.get("weights_sha256"):
        raise IntegrityError(f"{weights}: SHA-256 does not match {cfg_file.name} (damaged, or from another save)")
    try:
        with safe_open(str(weights), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise IntegrityError(f"{weights}: unreadable safetensors file ({e})") from e
    if meta.get("config_sha256") != doc["config_sha256"]:
        raise IntegrityError(f"{weights} was saved with a different config than {cfg_file.name}")
    model = DaerModel(cfg, text_cache=text_cache)
    model.load_checkpoint_state(state)
    return model.to(map_location).eval()
