"""DaerModel: forward for the loss, scores, explain, and checkpoints that reload bit-exact or are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import daer
from daer.errors import BadInputError, DaerError, IntegrityError
from daer.models.model import CHECKPOINT_FORMAT, DaerModel, Explanation, create_model, load_model
from daer.models.text_cache import TextFeatureCache
from daer.utils.hashing import sha256_file

CAPTIONS = ["a chair with four legs", "a tall floor lamp", "a mug with a handle"]


def clouds(b: int, n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, n, 3, generator=g)
    return x / x.norm(dim=-1, keepdim=True)


@pytest.fixture()
def tiny() -> DaerModel:
    torch.manual_seed(0)
    return create_model("tiny")


def test_forward_gives_what_the_loss_needs(tiny: DaerModel) -> None:
    x = clouds(3, tiny.config.n_points)
    out = tiny(x, CAPTIONS)
    assert out["shape_global"].shape == out["text_global"].shape == (3, tiny.config.embed_dim)
    assert out["fine_scores"].shape == (3, 3)
    assert float(out["logit_scale"].detach()) == pytest.approx(1 / 0.07, rel=1e-5)
    torch.testing.assert_close(out["fine_scores"], tiny.fine_scores(out["text_features"], out["shape_features"]))
    assert "fine_scores" not in tiny(x, CAPTIONS, fine=False)
    s = tiny.score(tiny.encode_text(CAPTIONS[:2]), tiny.encode_points(x))
    assert s.shape == (2, 3)
    with pytest.raises(BadInputError):
        tiny(x, CAPTIONS[:2])


def test_logit_scale_is_clamped(tiny: DaerModel) -> None:
    with torch.no_grad():
        tiny.logit_scale.fill_(10.0)
    assert float(tiny.logit_scale_value().detach()) == 100.0


def test_global_mode_is_the_plain_cosine() -> None:
    torch.manual_seed(0)
    model = create_model("tiny", mode="global")
    assert model.haf is None
    x = clouds(2, model.config.n_points)
    t, s = model.encode_text(CAPTIONS), model.encode_points(x)
    torch.testing.assert_close(model.score(t, s), t.global_ @ s.global_.T)
    assert "fine_scores" not in model(x, CAPTIONS[:2])
    with pytest.raises(DaerError, match="global"):
        model.explain("a mug", x[0].numpy())


def test_explain_shapes_and_mapping(tiny: DaerModel) -> None:
    pts = clouds(1, 300, seed=3)[0].numpy() * 5.0 + 2.0  # any scale and offset; any N >= level-1 size
    e = tiny.explain("a chair with four legs", pts)
    assert isinstance(e, Explanation)
    t = len(e.words)
    assert e.words == ["chair", "four", "legs"]  # content words only (daer.models.content_words)
    assert [a.shape for a in e.attention] == [(t, n) for n in tiny.config.level_sizes]
    assert [c.shape for c in e.centers] == [(n, 3) for n in tiny.config.level_sizes]
    assert e.point_attention.shape == (t, 300) and e.points.shape == (300, 3)
    assert np.abs(np.linalg.norm(e.points, axis=1).max() - 1) < 1e-5
    for a in e.attention:
        np.testing.assert_allclose(a.sum(1), 1.0, rtol=1e-5)
    # a point that coincides with a level-1 centre carries that centre's attention
    w = np.array(tiny.haf.get_policy()["level_weight"])
    w = w / w.sum()
    i = int(np.argmin(np.linalg.norm(e.points - e.centers[0][0], axis=1)))
    want = sum(
        w[lvl] * a[:, np.argmin(np.linalg.norm(c - e.points[i], axis=1))] * a.shape[1]
        for lvl, (a, c) in enumerate(zip(e.attention, e.centers, strict=True))
    )
    np.testing.assert_allclose(e.point_attention[:, i], want, rtol=1e-5)
    np.testing.assert_allclose(e.token_weights.sum(), 1.0, rtol=1e-5)
    assert e.level_scores.shape == (3,) and isinstance(e.score, float)
    assert tiny.training  # explain restores the mode
    with pytest.raises(BadInputError, match="at least"):
        tiny.explain("a mug", pts[:5])


def test_save_load_round_trip_is_bit_exact(tiny: DaerModel, tmp_path: Path) -> None:
    tiny.haf.set_policy(tau=[0.5, 2.0, 1.0], level_weight=[0.1, 0.6, 0.3], mix=0.7)
    with torch.no_grad():
        tiny.logit_scale.fill_(3.0)
    tiny.eval()
    x = clouds(4, tiny.config.n_points, seed=5)
    with torch.no_grad():
        want = tiny.score(tiny.encode_text(CAPTIONS), tiny.encode_points(x))
    tiny.save(tmp_path / "run")
    doc = json.loads((tmp_path / "run" / "config.json").read_text())
    assert doc["format_version"] == CHECKPOINT_FORMAT and doc["config"]["name"] == "tiny"
    for loaded in (load_model(tmp_path / "run"), daer.load(tmp_path / "run" / "model.safetensors")):
        assert not loaded.training
        assert loaded.haf.get_policy() == tiny.haf.get_policy()
        with torch.no_grad():
            got = loaded.score(loaded.encode_text(CAPTIONS), loaded.encode_points(x))
        assert torch.equal(got, want)


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage",
    ["weights_byte", "weights_header", "truncated", "config_edit", "config_json", "no_weights", "format", "other_cfg"],
)
def test_damaged_checkpoints_are_refused(tiny: DaerModel, tmp_path: Path, damage: str) -> None:
    run = tmp_path / "run"
    tiny.save(run)
    weights, cfg = run / "model.safetensors", run / "config.json"
    doc = json.loads(cfg.read_text())
    if damage == "weights_byte":
        _flip_byte(weights, -20)
    elif damage == "weights_header":
        _flip_byte(weights, 3)
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:-64])
    elif damage == "config_edit":
        doc["config"]["depth"] = 2
        cfg.write_text(json.dumps(doc))
    elif damage == "config_json":
        cfg.write_text("{not json")
    elif damage == "no_weights":
        weights.unlink()
    elif damage == "format":
        doc["format_version"] = 99
        cfg.write_text(json.dumps(doc))
    elif damage == "other_cfg":
        # weights of one model beside the (self-consistent) config of another
        # (its weights hash rewritten to match, so only the config hash inside the weights can tell)
        other = create_model("tiny", haf_dim=8)
        other.save(tmp_path / "other")
        other_doc = json.loads((tmp_path / "other" / "config.json").read_text())
        other_doc["weights_sha256"] = sha256_file(weights)
        cfg.write_text(json.dumps(other_doc))
    with pytest.raises(IntegrityError):
        load_model(run)


def test_missing_checkpoint_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="no checkpoint"):
        load_model(tmp_path / "nothing")


def test_minilm_model_checkpoint_is_small_and_exact(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cache = TextFeatureCache(tmp_path / "text.sqlite")
    model = create_model("small", text_cache=cache, level_sizes=[64, 16, 4], n_points=256).eval()
    assert model.config.text_encoder_sha256 is not None  # pinned on creation
    model.save(tmp_path / "run")
    size = (tmp_path / "run" / "model.safetensors").stat().st_size
    assert size < 8 * 2**20  # MiniLM's 90 MB are not copied in
    state = model.checkpoint_state()
    assert not any(k.startswith("text.backbone.") for k in state) and "text.token_proj.weight" in state
    x = clouds(2, 256)
    with torch.no_grad():
        want = model.score(model.encode_text(CAPTIONS), model.encode_points(x))
        loaded = load_model(tmp_path / "run", text_cache=cache)
        got = loaded.score(loaded.encode_text(CAPTIONS), loaded.encode_points(x))
    assert torch.equal(got, want)


@pytest.mark.parametrize("readout", ["value", "cosine"])
def test_both_haf_readouts_save_and_reload(tmp_path: Path, readout: str) -> None:
    model = create_model("tiny", haf_readout=readout, text_content_words=readout == "value")
    model.save(tmp_path / readout)
    back = load_model(tmp_path / readout)
    assert back.config.haf_readout == readout
    for k, v in model.checkpoint_state().items():
        assert torch.equal(v, back.checkpoint_state()[k]), k


def test_raw_clouds_rank_like_their_normalised_copies(tiny: DaerModel) -> None:
    """A cloud in other units and place embeds as the unit-sphere copy does (issue: raw and x10 differed)."""
    pts = clouds(2, 300, seed=5)
    with torch.no_grad():
        a = tiny.encode_points(pts)
        b = tiny.encode_points(pts * 10.0 + torch.tensor([3.0, -2.0, 7.0]))
    torch.testing.assert_close(a.global_, b.global_, atol=1e-4, rtol=0)
    with pytest.raises(BadInputError, match="NaN"):
        tiny.encode_points(torch.full((1, 300, 3), float("nan")))


def test_checkpoints_saved_before_a_config_field_existed_still_load(tiny: DaerModel) -> None:
    """A field added later (ADDED_FIELDS) is left out of the hash at its old value, so the hash equals the one
    a daer that predates the field recorded; set to another value, it counts."""
    import hashlib

    from daer.models.config import ADDED_FIELDS

    old = {k: v for k, v in tiny.config.to_dict().items() if k not in ADDED_FIELDS}
    recorded = hashlib.sha256(json.dumps(old, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert tiny.config.sha256() == recorded
    changed = tiny.config.__class__.from_dict({**tiny.config.to_dict(), "text_phrase_tokens": True})
    assert changed.sha256() != recorded
