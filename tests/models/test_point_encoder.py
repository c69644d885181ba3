"""Hierarchical point encoder: shapes, cached groups, the fast paths against plain formulations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from daer.errors import BadInputError
from daer.models.config import load_config
from daer.models.point_encoder import GroupEmbed, PatchEmbed, PointEncoder, PointFeatures, group_max
from daer.models.pointops import PointGroups, gather, precompute_groups


@pytest.fixture(scope="module")
def cfg():
    return load_config("tiny")


def cloud(b: int, n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, n, 3, generator=g)
    return x / x.norm(dim=-1, keepdim=True)


def test_output_shapes_and_normalised_global(cfg) -> None:
    torch.manual_seed(0)
    enc = PointEncoder(cfg)
    f = enc(cloud(4, cfg.n_points))
    assert isinstance(f, PointFeatures) and len(f) == 4
    assert [tuple(x.shape) for x in f.levels] == [(4, n, cfg.embed_dim) for n in cfg.level_sizes]
    assert [tuple(c.shape) for c in f.centers] == [(4, n, 3) for n in cfg.level_sizes]
    torch.testing.assert_close(f.global_.norm(dim=-1), torch.ones(4))


def test_precomputed_groups_give_the_same_features(cfg) -> None:
    torch.manual_seed(0)
    enc = PointEncoder(cfg).eval()
    x = cloud(3, cfg.n_points, seed=1)
    per_shape = [precompute_groups(x[i], cfg.level_sizes, cfg.level_k) for i in range(3)]
    a, b = enc(x), enc(x, PointGroups.stack(per_shape))
    for u, v in zip(a.levels + [a.global_], b.levels + [b.global_], strict=True):
        assert torch.equal(u, v)
    # the centres are input points picked by FPS
    assert torch.equal(a.centers[0], gather(x, torch.stack([g.centers[0] for g in per_shape])))


@pytest.mark.parametrize("local_position", [True, False])
def test_local_tokens_without_position_read_geometry_only(cfg, local_position: bool) -> None:
    # Shifting the whole cloud keeps every kNN group: without local_position the patch and part tokens are
    # unchanged (local geometry only) while the object level and the global embedding still see the position.
    torch.manual_seed(0)
    enc = PointEncoder(load_config(cfg, local_position=local_position)).eval()
    x = cloud(2, cfg.n_points, seed=2)
    groups = enc.groups(x)
    a, b = enc(x, groups), enc(x + torch.tensor([0.3, -0.2, 0.25]), groups)
    for lvl in (0, 1):
        assert torch.allclose(a.levels[lvl], b.levels[lvl], atol=1e-5) == (not local_position), lvl
    assert not torch.allclose(a.global_, b.global_, atol=1e-5)


def test_every_parameter_gets_a_gradient(cfg) -> None:
    torch.manual_seed(0)
    enc = PointEncoder(cfg)
    f = enc(cloud(2, cfg.n_points))
    (sum(x.square().mean() for x in f.levels) + f.global_[:, 0].sum()).backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_patch_embed_matches_plain_pointnet() -> None:
    torch.manual_seed(0)
    pe = PatchEmbed([8, 12], 10, radius=0.5).double()
    pts = torch.randn(2, 40, 3, dtype=torch.float64)
    groups = precompute_groups(pts, [6], [5])
    centers = gather(pts, groups.centers[0])
    rel = (gather(pts, groups.neighbors[0]) - centers[:, :, None]) / 0.5  # (B, M, k, 3)
    h = torch.relu(pe.first(rel))
    for layer in pe.mlp:
        h = layer(h)
    want = pe.out(torch.relu(h).max(dim=2).values)  # ReLU before the pool, as written in PointNet
    torch.testing.assert_close(pe(pts, centers, groups.neighbors[0]), want)


def test_group_embed_matches_concat_mlp() -> None:
    torch.manual_seed(0)
    ge = GroupEmbed(7, 9, radius=2.0).double()
    tokens, pos = torch.randn(2, 20, 7, dtype=torch.float64), torch.randn(2, 20, 3, dtype=torch.float64)
    groups = precompute_groups(pos, [5], [4])
    centers = gather(pos, groups.centers[0])
    rel = (gather(pos, groups.neighbors[0]) - centers[:, :, None]) / 2.0
    x = torch.cat([gather(tokens, groups.neighbors[0]), rel], dim=-1)
    first = nn.Linear(10, 9).double()
    with torch.no_grad():
        first.weight.copy_(torch.cat([ge.token.weight, ge.rel.weight], dim=1))
        first.bias.copy_(ge.token.bias)
    want = ge.out(torch.relu(first(x)).max(dim=2).values)
    torch.testing.assert_close(ge(tokens, pos, centers, groups.neighbors[0]), want)


def test_group_max_gradient_matches_torch_max() -> None:
    h = torch.randn(2, 3, 5, 4, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 3, 4, dtype=torch.float64)
    (ours,) = torch.autograd.grad((group_max(h) * g).sum(), h)
    (ref,) = torch.autograd.grad((h.max(dim=2).values * g).sum(), h)
    assert torch.equal(ours, ref)
    with torch.no_grad():
        assert torch.equal(group_max(h), h.max(dim=2).values)


def test_group_max_gives_a_tied_maximum_gradient_once() -> None:
    """Repeated points tie in the max: the gradient goes to one of them, never to each (gradient mass kept)."""
    base = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    h = torch.cat([base, base[:, :, :2]], dim=2).requires_grad_(True)  # neighbours 0, 1 repeated as 4, 5
    g = torch.randn(2, 3, 5, dtype=torch.float64)
    (ours,) = torch.autograd.grad((group_max(h) * g).sum(), h)
    torch.testing.assert_close(ours.sum(2), g)  # each output's gradient lands exactly once
    assert int((ours != 0).sum()) == g.numel()
    # away from ties the backward is the true derivative
    free = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(group_max, (free,))


def test_bad_inputs_refused(cfg) -> None:
    enc = PointEncoder(cfg)
    with pytest.raises(BadInputError):
        enc(torch.randn(2, cfg.n_points))
    x = cloud(2, cfg.n_points)
    wrong = precompute_groups(x, [16, 8, 4], cfg.level_k)
    with pytest.raises(BadInputError, match="point groups"):
        enc(x, wrong)
