"""FPS, kNN and cached groups against naive per-shape references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from daer.errors import BadInputError
from daer.models.pointops import PointGroups, farthest_point_sample, gather, knn, precompute_groups


def naive_fps(points: np.ndarray, m: int) -> list[int]:
    chosen = [0]
    dist = np.full(len(points), np.inf)
    for _ in range(m - 1):
        dist = np.minimum(dist, ((points - points[chosen[-1]]) ** 2).sum(-1))
        chosen.append(int(np.argmax(dist)))
    return chosen


def naive_knn(query: np.ndarray, ref: np.ndarray, k: int) -> np.ndarray:
    out = np.empty((len(query), k), dtype=np.int64)
    for i, q in enumerate(query):
        d = [float(((q - r) ** 2).sum()) for r in ref]
        out[i] = np.argsort(d, kind="stable")[:k]
    return out


@pytest.mark.parametrize("b,n,m", [(1, 50, 1), (3, 64, 16), (2, 200, 37)])
def test_fps_matches_naive(b: int, n: int, m: int) -> None:
    rng = np.random.default_rng(n)
    pts = rng.normal(size=(b, n, 3))
    got = farthest_point_sample(torch.from_numpy(pts), m)
    assert got.shape == (b, m) and got.dtype == torch.long
    for i in range(b):
        assert got[i].tolist() == naive_fps(pts[i], m)
        assert len(set(got[i].tolist())) == m


@pytest.mark.parametrize("b,m,n,k", [(1, 5, 30, 1), (3, 16, 80, 8), (2, 40, 120, 120)])
def test_knn_matches_naive(b: int, m: int, n: int, k: int) -> None:
    rng = np.random.default_rng(m + n)
    query, ref = rng.normal(size=(b, m, 3)), rng.normal(size=(b, n, 3))
    got = knn(torch.from_numpy(query), torch.from_numpy(ref), k).numpy()
    for i in range(b):
        np.testing.assert_array_equal(got[i], naive_knn(query[i], ref[i], k))


def test_knn_blocks_over_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    import daer.models.pointops as po

    rng = np.random.default_rng(1)
    q, r = torch.from_numpy(rng.normal(size=(5, 7, 3))), torch.from_numpy(rng.normal(size=(5, 30, 3)))
    full = knn(q, r, 4)
    monkeypatch.setattr(po, "_KNN_BLOCK", 7 * 30 * 2)  # two shapes per block, last block partial
    assert torch.equal(knn(q, r, 4), full)


def test_gather() -> None:
    x = torch.arange(2 * 5 * 2, dtype=torch.float32).view(2, 5, 2)
    idx = torch.tensor([[[4, 0]], [[1, 1]]])  # (2, 1, 2)
    out = gather(x, idx)
    assert out.shape == (2, 1, 2, 2)
    assert torch.equal(out[0, 0, 0], x[0, 4]) and torch.equal(out[1, 0, 1], x[1, 1])


def test_gather_gradient_sums_repeated_rows() -> None:
    """The index_add_ backward against a loop: a row gathered several times gets the sum of its gradients."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 6, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    idx = torch.randint(0, 6, (3, 5, 7), generator=gen)  # 35 picks of 6 rows: many repeats
    grad = torch.randn(3, 5, 7, 4, generator=gen, dtype=torch.float64)
    gather(x, idx).backward(grad)
    want = torch.zeros_like(x)
    for b in range(3):
        for m in range(5):
            for j in range(7):
                want[b, idx[b, m, j]] += grad[b, m, j]
    assert torch.allclose(x.grad, want)
    assert torch.autograd.gradcheck(lambda t: gather(t, idx), (x.detach().requires_grad_(),))


def test_bad_sizes_refused() -> None:
    pts = torch.randn(1, 10, 3)
    with pytest.raises(BadInputError):
        farthest_point_sample(pts, 11)
    with pytest.raises(BadInputError):
        knn(pts, pts, 0)
    with pytest.raises(BadInputError):
        precompute_groups(np.zeros((10, 2)), [4], [2])


def _groups_equal(a: PointGroups, b: PointGroups) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.centers + a.neighbors, b.centers + b.neighbors, strict=True))


def test_precompute_groups_levels_and_batching() -> None:
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(3, 128, 3)).astype(np.float32)
    sizes, ks = [32, 8, 4], [8, 4, 2]
    g = precompute_groups(pts, sizes, ks)
    assert g.batched
    assert [tuple(c.shape) for c in g.centers] == [(3, 32), (3, 8), (3, 4)]
    assert [tuple(n.shape) for n in g.neighbors] == [(3, 32, 8), (3, 8, 4), (3, 4, 2)]
    g.check(128, sizes, ks, 3)
    # level 2 is FPS/kNN over the level-1 centre positions
    p1 = pts[1][g.centers[0][1].numpy()]
    assert g.centers[1][1].tolist() == naive_fps(p1.astype(np.float64), 8)
    # one shape alone gives the same groups as inside the batch
    single = precompute_groups(pts[2], sizes, ks)
    assert not single.batched and _groups_equal(single, g.unbind()[2])
    assert _groups_equal(PointGroups.stack(g.unbind()), g)
    # compact arrays round-trip
    arrays = single.to_arrays()
    assert all(a.dtype == np.int16 for a in arrays.values())
    assert _groups_equal(PointGroups.from_arrays(arrays), single)


def test_groups_invariant_to_rotation_scale_translation() -> None:
    rng = np.random.default_rng(3)
    pts = rng.normal(size=(200, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    moved = 2.5 * pts @ q.T + np.array([0.3, -1.0, 2.0])
    a = precompute_groups(torch.from_numpy(pts), [50, 12, 4], [10, 4, 3])
    b = precompute_groups(torch.from_numpy(moved), [50, 12, 4], [10, 4, 3])
    assert _groups_equal(a, b)


def test_check_rejects_mismatched_groups() -> None:
    g = precompute_groups(torch.randn(2, 64, 3), [16, 8, 4], [4, 4, 2])
    with pytest.raises(BadInputError, match="level 0"):
        g.check(64, [32, 8, 4], [4, 4, 2], 2)
    with pytest.raises(BadInputError):
        g.check(64, [16, 8, 4], [4, 4, 2], 3)
    g.neighbors[1][0, 0, 0] = 99
    with pytest.raises(BadInputError, match="outside"):
        g.check(64, [16, 8, 4], [4, 4, 2], 2)
    with pytest.raises(BadInputError):
        PointGroups.from_arrays({"centers_0": np.zeros(3)})
