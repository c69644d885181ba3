"""Hierarchical Attention Fusion: every text token attends over the point tokens of every level.

For level l: A_l = softmax_points((T W_q,l)(P_l W_k,l)ᵀ / (√d · τ_l)). Two readouts:

- ``cosine`` (the plain form): keys double as values, a_i = Σ_j A_ij k_j, and the token's score is
  cos(q_i, a_i). A best-match detector: it cannot count, nor let a present part lower "no armrests".
- ``value`` (default): a_i = Σ_j A_ij v_j with a value projection of the point tokens, compared with
  the token's own *expectation* u_i = W_u t_i, plus an evidence term g_i · e_i where
  e_i = mean_j σ(logit_ij), a soft share of the level's tokens that match (linear in how many legs
  there are, where a softmax is not), and the word sets its sign and size g_i = w_g · t_i + b_g (so
  "no armrests" can be lowered by armrest points). Point tokens
  that have seen their context (see the point encoder) carry counts into v.

The level score is the token-importance-weighted sum of token scores (padding weighs zero).
fine = Σ_l w_l·S_l and final = (1 − mix)·global_cos + mix·fine. τ, w and mix form the attention
*policy*: buffers saved with the model, set by DAP calibration, never trained by gradient.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from daer.errors import BadInputError
from daer.models.point_encoder import PointFeatures
from daer.models.text_encoder import TextFeatures

_EPS = 1e-6


def _cosine(q: Tensor, a: Tensor) -> Tensor:
    """Cosine along the last dim, with the norms clamped away from zero."""
    return (q * a).sum(-1) / (q.norm(dim=-1) * a.norm(dim=-1)).clamp_min(_EPS)


class HierarchicalAttentionFusion(nn.Module):
    """Token-to-point attention scores per level, and their fusion with the global cosine.

    Args:
        embed_dim: D, width of text and point tokens.
        n_levels: L, number of point token levels.
        attn_dim: d, width of the per-level query/key space.
        tau, level_weight, mix: the initial policy.
        chunk: max elements of one (texts × tokens × shapes × points) block in :meth:`level_scores`.
        readout: ``"value"`` (value projection, expectation and evidence) or ``"cosine"`` (the plain form).
    """

    def __init__(
        self,
        embed_dim: int,
        n_levels: int,
        attn_dim: int,
        tau: Sequence[float],
        level_weight: Sequence[float],
        mix: float,
        chunk: int = 1 << 20,
        readout: str = "value",
    ) -> None:
        super().__init__()
        if readout not in ("value", "cosine"):
            raise BadInputError(f"HAF readout must be 'value' or 'cosine', got {readout!r}")
        self.n_levels = n_levels
        self.attn_dim = attn_dim
        self.chunk = chunk
        self.readout = readout

        def projections() -> nn.ModuleList:
            return nn.ModuleList(nn.Linear(embed_dim, attn_dim, bias=False) for _ in range(n_levels))

        self.query = projections()
        self.key = projections()
        # The plain readout reads the keys back with the queries (None here); the value readout has its own maps.
        self.value = projections() if readout == "value" else None
        self.expect = projections() if readout == "value" else None
        self.evidence = nn.ModuleList(nn.Linear(embed_dim, 1) for _ in range(n_levels)) if readout == "value" else None
        if self.evidence is not None:
            for lin in self.evidence:  # starts as the pure readout; each word learns its evidence sign and size
                nn.init.zeros_(lin.weight)
                nn.init.zeros_(lin.bias)
        self.importance = nn.Linear(embed_dim, 1)
        self.register_buffer("tau", torch.ones(n_levels))
        self.register_buffer("level_weight", torch.ones(n_levels) / n_levels)
        self.register_buffer("mix", torch.tensor(0.5))
        self.set_policy(tau=tau, level_weight=level_weight, mix=mix)

    # --- policy ---
    def get_policy(self) -> dict[str, list[float] | float]:
        """The current policy as plain numbers: ``{"tau": [L], "level_weight": [L], "mix": float}``."""
        return {"tau": self.tau.tolist(), "level_weight": self.level_weight.tolist(), "mix": float(self.mix)}

    def set_policy(
        self,
        tau: Sequence[float] | Tensor | None = None,
        level_weight: Sequence[float] | Tensor | None = None,
        mix: float | Tensor | None = None,
    ) -> None:
        """Replace any part of the policy (values are checked: τ > 0, w >= 0, 0 <= mix <= 1)."""
        if tau is not None:
            t = self._vector("tau", tau)
            if not bool((t > 0).all()):
                raise BadInputError(f"HAF policy: tau must be positive, got {t.tolist()}")
            self.tau.copy_(t)
        if level_weight is not None:
            w = self._vector("level_weight", level_weight)
            if not bool((w >= 0).all()):
                raise BadInputError(f"HAF policy: level_weight must be non-negative, got {w.tolist()}")
            self.level_weight.copy_(w)
        if mix is not None:
            m = float(mix)
            if not 0.0 <= m <= 1.0:
                raise BadInputError(f"HAF policy: mix must be in [0, 1], got {m}")
            self.mix.fill_(m)

    def _vector(self, name: str, value: Sequence[float] | Tensor) -> Tensor:
        v = torch.as_tensor(value, dtype=torch.float32).detach().reshape(-1).cpu()
        if v.numel() != self.n_levels or not bool(torch.isfinite(v).all()):
            raise BadInputError(f"HAF policy: {name} needs {self.n_levels} finite values, got {v.tolist()}")
        return v

    def _tau(self, tau: Tensor | Sequence[float] | None) -> list[float]:
        if tau is None:
            return self.tau.tolist()
        t = self._vector("tau", tau)
        if not bool((t > 0).all()):
            raise BadInputError(f"HAF: tau must be positive, got {t.tolist()}")
        return t.tolist()

    # --- scores ---
    def token_weights(self, text: TextFeatures) -> Tensor:
        """Importance of each token, (B, T), summing to one over the real tokens."""
        logits = self.importance(text.tokens).squeeze(-1)  # (B, T)
        logits = logits.masked_fill(~text.mask, torch.finfo(logits.dtype).min)
        return logits.softmax(-1) * text.mask

    def level_scores(self, text: TextFeatures, shapes: PointFeatures, tau: Tensor | None = None) -> Tensor:
        """Level scores of every text with every shape, (Bt, Bs, L), in blocks that bound memory.

        Only real tokens are scored: they are packed into one (R, d) matrix (R = tokens over all
        texts, padding left out) and each text's score is the sum of its tokens' weighted cosines.

        Args:
            tau: (L,) temperatures to use instead of the policy's (DAP evaluates candidates this way).
        """
        taus = self._tau(tau)
        w = self.token_weights(text)  # (Bt, T)
        bt = w.shape[0]
        bs = len(shapes)
        if bt == 0 or bs == 0:
            return w.new_zeros(bt, bs, self.n_levels)
        mask = text.mask
        lengths = mask.sum(1)  # (Bt,)
        tokens = text.tokens[mask]  # (R, D) real tokens, text by text
        w_real = w[mask]  # (R,)
        owner = torch.repeat_interleave(torch.arange(bt, device=w.device), lengths)  # (R,) text of each token
        ends = torch.cumsum(lengths, 0).tolist()  # token offset after each text
        per_level = []
        for lvl in range(self.n_levels):
            q, u, gate = self._text_side(lvl, tokens)  # (R, d), (R, d), (R,) or None
            k, v = self._point_side(lvl, shapes.levels[lvl])  # (Bs, N, d) each
            n = k.shape[1]
            scale = 1.0 / (math.sqrt(self.attn_dim) * taus[lvl])
            rows = []
            i = 0
            while i < bt:  # a block of whole texts with at most chunk / N tokens (at least one text)
                first = ends[i - 1] if i else 0
                j = i + 1
                while j < bt and (ends[j] - first) * n <= self.chunk:
                    j += 1
                last = ends[j - 1]
                ui, wi, oi = u[first:last], w_real[first:last], owner[first:last] - i  # (r, d), (r,), (r,)
                qf = q[first:last] * scale  # scaled here: smaller than the logits
                gi = gate[first:last] if gate is not None else None
                s_step = max(1, self.chunk // max(1, (last - first) * n))
                cols = []
                for c in range(0, bs, s_step):
                    kc, vc = k[c : c + s_step], v[c : c + s_step]  # (bs', N, d)
                    logits = torch.bmm(qf.expand(kc.shape[0], -1, -1), kc.transpose(1, 2))  # (bs', r, N)
                    att = torch.bmm(logits.softmax(-1), vc)  # (bs', r, d)
                    cos = self._token_scores(ui[None], att, logits, gi) * wi  # (bs', r)
                    summed = cos.new_zeros(kc.shape[0], j - i).index_add(1, oi, cos)  # (bs', texts of the block)
                    cols.append(summed.T)  # (texts, bs')
                rows.append(torch.cat(cols, dim=1))
                i = j
            per_level.append(torch.cat(rows, dim=0))  # (Bt, Bs)
        return torch.stack(per_level, dim=-1)  # (Bt, Bs, L)

    def paired_level_scores(
        self,
        text: TextFeatures,
        shapes: PointFeatures,
        tau: Tensor | None = None,
        pairs: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """Level scores of aligned pairs (text b with shape b), (B, L).

        Args:
            pairs: (text rows, shape rows), two (M,) index tensors: score those M pairs instead, (M, L).
                Tokens are projected once per text and per shape, then gathered (cheaper than
                ``select``-ing M copies of the features first).
        """
        if pairs is None and len(text) != len(shapes):
            raise BadInputError(f"paired scores need as many texts as shapes ({len(text)} vs {len(shapes)})")
        w = self.token_weights(text)  # (Bt, T)
        if pairs is not None:
            ti, si = pairs
            w = w.index_select(0, ti)  # (M, T)
        taus = self._tau(tau)
        out = []
        for lvl in range(self.n_levels):
            q, u, gate = self._text_side(lvl, text.tokens)  # (Bt, T, d), (Bt, T, d), (Bt, T) or None
            k, v = self._point_side(lvl, shapes.levels[lvl])  # (Bs, N, d)
            if pairs is not None:
                q, u, k, v = q.index_select(0, ti), u.index_select(0, ti), k.index_select(0, si), v.index_select(0, si)
                gate = gate.index_select(0, ti) if gate is not None else None
            logits = self._logits(q, k, taus[lvl])  # (B, T, N)
            att = torch.bmm(logits.softmax(-1), v)  # (B, T, d)
            out.append((self._token_scores(u, att, logits, gate) * w).sum(-1))  # (B,)
        return torch.stack(out, dim=-1)  # (B, L)

    def attention(self, text: TextFeatures, shapes: PointFeatures, tau: Tensor | None = None) -> list[Tensor]:
        """A_l of aligned pairs: per level (B, T, N_l), each row a distribution over that level's tokens."""
        if len(text) != len(shapes):
            raise BadInputError(f"attention needs as many texts as shapes ({len(text)} vs {len(shapes)})")
        taus = self._tau(tau)
        return [
            self._logits(self.query[lvl](text.tokens), self.key[lvl](shapes.levels[lvl]), taus[lvl]).softmax(-1)
            for lvl in range(self.n_levels)
        ]  # per level (B, T, N_l)

    def expectations(self, lvl: int, tokens: Tensor) -> Tensor:
        """What text tokens (..., D) expect to read at one level, (..., d): the u of the readout."""
        return self._text_side(lvl, tokens)[1]

    def read_values(self, lvl: int, points: Tensor, weights: Tensor) -> Tensor:
        """Point values (R, N, D) of one level read with given weights (R, N) instead of attention, (R, d)."""
        _, v = self._point_side(lvl, points)
        return torch.einsum("rn,rnd->rd", weights.to(v.dtype), v)

    def _logits(self, q: Tensor, k: Tensor, tau: float) -> Tensor:
        """Attention logits of aligned pairs: queries (B, T, d) against keys (B, N, d) -> (B, T, N)."""
        return torch.bmm(q, k.transpose(1, 2)) / (math.sqrt(self.attn_dim) * tau)

    def _text_side(self, lvl: int, tokens: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Queries, expectations and evidence gates of text tokens (..., D) at one level."""
        q = self.query[lvl](tokens)
        u = q if self.expect is None else self.expect[lvl](tokens)
        gate = self.evidence[lvl](tokens).squeeze(-1) if self.evidence is not None else None
        return q, u, gate

    def _point_side(self, lvl: int, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values of point tokens (..., D) at one level."""
        k = self.key[lvl](tokens)
        return k, (k if self.value is None else self.value[lvl](tokens))

    @staticmethod
    def _token_scores(u: Tensor, att: Tensor, logits: Tensor, gate: Tensor | None) -> Tensor:
        """cos(u, attended value) plus, with gates, g · mean_j σ(logit_j); (..., T)."""
        score = _cosine(u, att)
        if gate is None:
            return score
        return score + gate * torch.sigmoid(logits).mean(-1)  # evidence: the soft share of matching tokens

    def fine(self, level_scores: Tensor) -> Tensor:
        """Σ_l w_l·S_l over the last dim of (..., L) level scores."""
        return (level_scores * self.level_weight.to(level_scores.dtype)).sum(-1)

    def fuse(self, level_scores: Tensor, global_cos: Tensor) -> Tensor:
        """(1 − mix)·global_cos + mix·Σ_l w_l·S_l; level scores (..., L), global cosines (...)."""
        if level_scores.shape[:-1] != global_cos.shape or level_scores.shape[-1] != self.n_levels:
            raise BadInputError(
                f"fuse: level scores {tuple(level_scores.shape)} do not match global cosines {tuple(global_cos.shape)}"
            )
        mix = self.mix.to(global_cos.dtype)
        return (1 - mix) * global_cos + mix * self.fine(level_scores)
