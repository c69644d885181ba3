"""Text encoders: real offline MiniLM (hash-checked, cached), tampered weights refused, the tiny encoder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from daer.errors import BadInputError, IntegrityError
from daer.models.config import MINILM_NAME, MINILM_SHA256, load_config
from daer.models.content_words import split_phrases
from daer.models.text_cache import TextFeatureCache
from daer.models.text_encoder import (
    HFTextEncoder,
    TextFeatures,
    TinyTextEncoder,
    resolve_text_encoder_dir,
    verify_text_encoder,
)

CAPTIONS = ["a chair with four legs and armrests", "a tall lamp", "a mug"]


@pytest.fixture(scope="module")
def minilm(tmp_path_factory: pytest.TempPathFactory) -> HFTextEncoder:
    torch.manual_seed(0)
    cache = TextFeatureCache(tmp_path_factory.mktemp("cache") / "text.sqlite")
    return HFTextEncoder(load_config("small"), cache=cache)


def test_minilm_loads_offline_with_verified_hash(minilm: HFTextEncoder) -> None:
    assert minilm.weights_sha256 == MINILM_SHA256
    assert not any(p.requires_grad for p in minilm.backbone.parameters())
    f = minilm(CAPTIONS)
    assert isinstance(f, TextFeatures)
    b, t, d = f.tokens.shape
    assert (b, d) == (3, 256) and f.mask.shape == (3, t)
    assert f.words[0] == ["a", "chair", "with", "four", "legs", "and", "arm", "##rest", "##s"] or "chair" in f.words[0]
    assert [int(m.sum()) for m in f.mask] == [len(w) for w in f.words]
    assert "[CLS]" not in f.words[0] and "[SEP]" not in f.words[0]
    torch.testing.assert_close(f.global_.norm(dim=-1), torch.ones(3))
    assert torch.equal(f.tokens[2, len(f.words[2]) :], torch.zeros_like(f.tokens[2, len(f.words[2]) :]))


def test_encoder_load_leaves_the_environment_alone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Offline loading is local_files_only, not a process-wide HF_HUB_OFFLINE."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    HFTextEncoder(load_config("small"), cache=TextFeatureCache(tmp_path / "text.sqlite"))
    assert "HF_HUB_OFFLINE" not in os.environ


def test_minilm_global_is_sentence_transformers_mean_pooling(minilm: HFTextEncoder) -> None:
    enc = minilm.tokenizer(CAPTIONS, padding=True, return_tensors="pt")
    with torch.no_grad():
        h = minilm.backbone(**enc).last_hidden_state
        m = enc["attention_mask"][..., None].float()
        pooled = (h * m).sum(1) / m.sum(1)
        want = torch.nn.functional.normalize(minilm.global_proj(pooled), dim=-1)
        got = minilm(CAPTIONS).global_
    torch.testing.assert_close(got, want, atol=2e-3, rtol=0)  # cached hidden states are fp16


def test_cache_hit_is_bit_identical_and_persistent(minilm: HFTextEncoder, tmp_path: Path) -> None:
    cache = TextFeatureCache(tmp_path / "c.sqlite")
    minilm.cache, old = cache, minilm.cache
    try:
        with torch.no_grad():
            miss = minilm(CAPTIONS)
            minilm([CAPTIONS[0]])  # a repeat is a hit
            assert cache.misses == 3 and len(cache) == 3
            hit = minilm(CAPTIONS)  # same batch as the miss: BLAS kernels may differ across batch shapes
        assert cache.hits >= 4
        assert torch.equal(hit.tokens, miss.tokens) and torch.equal(hit.global_, miss.global_)
        # a fresh cache object on the same file reads from disk, not memory
        disk = TextFeatureCache(tmp_path / "c.sqlite")
        minilm.cache = disk
        with torch.no_grad():
            again = minilm(CAPTIONS)
        assert disk.hits == 3 and disk.misses == 0
        assert torch.equal(again.global_, hit.global_) and torch.equal(again.tokens, hit.tokens)
    finally:
        minilm.cache = old


def test_a_caption_does_not_depend_on_its_batch(minilm: HFTextEncoder, tmp_path: Path) -> None:
    minilm.cache, old = TextFeatureCache(None), minilm.cache
    try:
        with torch.no_grad():
            alone = minilm(["a mug"])
            minilm.cache = TextFeatureCache(None)
            together = minilm(["a very long caption about a sofa with three seats and high back", "a mug"])
    finally:
        minilm.cache = old
    n = len(alone.words[0])
    torch.testing.assert_close(alone.tokens[0, :n], together.tokens[1, :n], atol=1e-3, rtol=0)


def test_tampered_weights_refused(tmp_path: Path) -> None:
    folder = tmp_path / "minilm"
    shutil.copytree(resolve_text_encoder_dir(MINILM_NAME), folder)
    assert verify_text_encoder(folder, MINILM_SHA256) == MINILM_SHA256  # untouched copy passes
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="SHA-256"):
        HFTextEncoder(load_config("small", text_encoder=str(folder), text_encoder_sha256=MINILM_SHA256))
    # the same folder as a user's own encoder (no expected hash) loads, and its hash is reported
    enc = HFTextEncoder(load_config("small", text_encoder=str(folder)), cache=TextFeatureCache(None))
    assert enc.weights_sha256 != MINILM_SHA256 and enc(["a bowl"]).words[0] == ["bowl"]


def test_pickle_only_folder_refused(tmp_path: Path) -> None:
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(BadInputError, match="model.safetensors"):
        verify_text_encoder(tmp_path, None)
    with pytest.raises(BadInputError, match="no such folder"):
        resolve_text_encoder_dir(str(tmp_path / "missing"))


def test_finetune_last_layer_matches_frozen_and_trains(minilm: HFTextEncoder, tmp_path: Path) -> None:
    torch.manual_seed(0)
    ft = HFTextEncoder(load_config("small", text_finetune_layers=1), cache=TextFeatureCache(tmp_path / "ft.sqlite"))
    ft.token_proj.load_state_dict(minilm.token_proj.state_dict())
    ft.global_proj.load_state_dict(minilm.global_proj.state_dict())
    ft.eval()
    with torch.no_grad():
        a, b = ft(CAPTIONS), minilm(CAPTIONS)
    assert a.words == b.words
    torch.testing.assert_close(a.global_, b.global_, atol=3e-3, rtol=0)
    torch.testing.assert_close(a.tokens, b.tokens, atol=3e-2, rtol=0)
    trainable = {n for n, p in ft.named_parameters() if p.requires_grad}
    assert any(n.startswith("backbone.encoder.layer.5.") for n in trainable)  # shared with tail.0
    assert not any(n.startswith("backbone.encoder.layer.0.") for n in trainable)
    ft.train()
    ft(CAPTIONS).global_.sum().backward()
    assert ft.tail[0].output.dense.weight.grad is not None


def test_tiny_encoder() -> None:
    torch.manual_seed(0)
    cfg = load_config("tiny")
    enc = TinyTextEncoder(cfg)
    f = enc(["A chair, with 4 legs!", "a mug"])
    assert f.words[0] == ["chair", "4", "legs"]  # content words only: no article, filler or punctuation
    assert f.tokens.shape == (2, 3, cfg.embed_dim) and f.mask.sum().item() == 4
    torch.testing.assert_close(f.global_.norm(dim=-1), torch.ones(2))
    enc.eval()
    with torch.no_grad():
        alone, together = enc(["a mug"]), enc(["a very long caption indeed about things", "a mug"])
    torch.testing.assert_close(alone.global_[0], together.global_[1], atol=1e-6, rtol=0)
    for bad in ([], [""], ["  "], "a mug"):
        with pytest.raises(BadInputError):
            enc(bad)


def test_text_features_cat_and_select() -> None:
    enc = TinyTextEncoder(load_config("tiny"))
    a, b = enc(["a mug"]), enc(["a tall lamp with a cone shade"])
    c = TextFeatures.cat([a, b])
    assert c.tokens.shape[1] == b.tokens.shape[1] and c.words == a.words + b.words
    assert not c.mask[0, 2:].any()
    s = c.select([1])
    assert s.words == b.words and torch.equal(s.global_, b.global_)
    assert float(c.tokens[0, 2:].detach().abs().sum()) == 0.0


def test_cache_file_problems_fall_back_to_memory(tmp_path: Path) -> None:
    import pickle
    import threading

    import numpy as np

    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    cache = TextFeatureCache(bad)
    item = {"k": (np.arange(3), np.ones((3, 4)))}
    with pytest.warns(UserWarning, match="memory only"):
        cache.put_many(item)
    assert set(cache.get_many(["k", "other"])) == {"k"} and cache.path is None
    # a good cache works from another thread and survives pickling (DataLoader workers, spawn)
    good = TextFeatureCache(tmp_path / "good.sqlite")
    good.put_many(item)
    seen = {}
    t = threading.Thread(target=lambda: seen.update(TextFeatureCache(tmp_path / "good.sqlite").get_many(["k"])))
    t.start()
    t.join()
    ids, hidden = seen["k"]
    assert ids.dtype == np.int32 and hidden.dtype == np.float16 and hidden.shape == (3, 4)
    clone = pickle.loads(pickle.dumps(good))
    clone._mem.clear()
    assert set(clone.get_many(["k"])) == {"k"}
    good._mem.clear()  # the connection opened in this thread serves another thread too
    shared = {}
    t = threading.Thread(target=lambda: shared.update(good.get_many(["k"])))
    t.start()
    t.join()
    assert set(shared) == {"k"}


def test_feature_noise_is_training_only_of_the_set_std_and_seeded_per_caption() -> None:
    torch.manual_seed(0)
    cfg = load_config("tiny")
    enc = TinyTextEncoder(cfg)
    assert cfg.tiny_width == cfg.embed_dim
    with torch.no_grad():  # identity token projection: the token difference is the noise itself
        enc.token_proj.weight.copy_(torch.eye(cfg.embed_dim))
        enc.token_proj.bias.zero_()
    enc.noise.std = 0.3
    captions = [f"a chair with {i} legs and tall armrests beside a lamp" for i in range(64)]
    enc.eval()
    with torch.no_grad():
        clean = enc(captions)
        torch.testing.assert_close(enc(captions).tokens, clean.tokens)  # no noise outside training
    enc.train()  # the tiny transformer has no dropout: any train/eval difference is the feature noise
    with torch.no_grad():
        enc.noise.key = 7
        noisy = enc(captions)
        diff = (noisy.tokens - clean.tokens)[noisy.mask]
        assert abs(float(diff.std()) - 0.3) < 0.02 and abs(float(diff.mean())) < 0.02
        alone = enc(captions[5:6])  # same caption and key in another batch: the same noise
        torch.testing.assert_close(alone.tokens[0], noisy.tokens[5, : alone.tokens.shape[1]])
        torch.testing.assert_close(alone.global_[0], noisy.global_[5])
        torch.manual_seed(123)  # the global RNG plays no part
        torch.testing.assert_close(enc(captions).tokens, noisy.tokens)
        enc.noise.key = 8  # the next step draws afresh
        assert not torch.allclose(enc(captions).tokens, noisy.tokens)
        enc.noise.std = 0.0
        torch.testing.assert_close(enc(captions).tokens, clean.tokens)


def test_phrase_tokens_carry_their_own_phrase_only(minilm: HFTextEncoder, tmp_path: Path) -> None:
    """With text_phrase_tokens, a word's feature is the one its phrase gets encoded alone (checked against the
    backbone run on that phrase), it no longer changes with the other phrases, and the global is unchanged."""
    torch.manual_seed(0)
    cfg = load_config("small", text_phrase_tokens=True)
    phrased = HFTextEncoder(cfg, cache=TextFeatureCache(tmp_path / "p.sqlite"))
    phrased.load_state_dict(minilm.state_dict())
    phrased.eval()
    a, b = "a tree with a conical crown and a short trunk", "a tree with a conical crown and a tall trunk"
    with torch.no_grad():
        fp, fc = phrased([a, b]), minilm([a, b])
        enc = minilm.tokenizer(["with a conical crown"], return_tensors="pt")
        alone = minilm.backbone(**enc).last_hidden_state[0]
    words = fp.words[0]
    assert words == fc.words[0] and "conical" in words
    i = words.index("conical")
    want = minilm.token_proj(alone[minilm.tokenizer.convert_ids_to_tokens(enc["input_ids"][0]).index("conical")])
    torch.testing.assert_close(fp.tokens[0, i], want, atol=2e-2, rtol=0)  # cached features are fp16
    torch.testing.assert_close(fp.tokens[0, i], fp.tokens[1, i], atol=1e-6, rtol=0)  # the trunk cannot reach it
    assert (fc.tokens[0, i] - fc.tokens[1, i]).abs().max() > 1e-3  # with the whole caption it does
    torch.testing.assert_close(fp.global_, fc.global_)
    with pytest.raises(BadInputError, match="text_phrase_tokens"):
        load_config("small", text_phrase_tokens=True, text_finetune_layers=1)


def test_split_phrases_keeps_every_piece() -> None:
    assert split_phrases("a tree with a conical crown and a short trunk") == [
        "a tree", "with a conical crown", "and a short trunk"]  # fmt: skip
    assert split_phrases("a stool with 3 legs, a round seat") == ["a stool", "with 3 legs,", "a round seat"]
    assert split_phrases("armchair") == ["armchair"]
    text = "A Sofa: high back, (no arms) featuring 3 seats"
    assert "".join(split_phrases(text)).replace(" ", "") == text.replace(" ", "")
