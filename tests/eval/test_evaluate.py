"""``evaluate`` on tiny real data sets: a tiny model against naive full-matrix references, and a ground-truth
scorer (a small real module whose features encode what each caption says and which shape each cloud is)
that must reach 1.0 on every metric, which proves the wiring of texts, targets and relevance."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from daer.data.build import build_synth
from daer.data.point_groups import GroupSpec
from daer.data.record import ShapeRecord
from daer.data.shards import DatasetWriter, iter_records
from daer.errors import BadInputError
from daer.eval import metrics as M
from daer.eval.evaluate import EVAL_KEYS, evaluate
from daer.eval.grounding import attribute_tokens, token_shares
from daer.models.model import create_model
from daer.models.point_encoder import PointFeatures
from daer.models.text_encoder import TextFeatures
from daer.synth.captions import PHRASES, class_prompts, render_caption, spec_queries, value_phrases
from daer.synth.generator import caption_draws
from daer.synth.taxonomy import CATEGORIES, TAXONOMY
from tests.data.test_point_groups import TINY, spy_groups, with_group_values, without_groups

# --------------------------------------------------------------------------------------------------
# A ground-truth scorer


def _find(phrase: str, text: str) -> list[tuple[int, int]]:
    pat = r"(?<![\w-])" + re.escape(phrase) + r"(?![\w-])"
    return [m.span() for m in re.finditer(pat, text)]


def _norm(text: str) -> str:
    return re.sub(r"\ban\b", "a", text.lower().strip())


def _values(category: str) -> list[tuple[str, str]]:
    return [(a, v) for a, vs in TAXONOMY[category].items() for v in vs]


def parse_caption(text: str, categories: list[str], synth: bool) -> tuple[str, dict[str, str]]:
    """What a caption says: its category and the attribute values it names (raises when unsure)."""
    t = _norm(text)
    if not synth:
        found = [c for c in categories if _find(_norm(c.replace("_", " ")), t)]
        if len(found) != 1:
            raise ValueError(f"cannot tell the category of {text!r}: {found}")
        return found[0], {}
    nouns = {c: {_norm(n) for n in (c, *PHRASES[c].nouns)} for c in CATEGORIES}
    for c in CATEGORIES:
        for a in PHRASES[c].attrs.values():
            for forms in (a.head or {}).values():
                nouns[c].update(_norm(f) for f in forms)
    for kind in {b.kind for b in PHRASES.values()}:
        t = t.replace(f"a kind of {kind}", "")  # "a kind of home decor" names no house
    said = {c: [n for n in nouns[c] if _find(n, t)] for c in CATEGORIES}
    found = {c for c in CATEGORIES if said[c]}
    if len(found) > 1:  # a noun that another candidate says as an attribute ("a table lamp") names no category
        attr_words = {c: {_norm(p) for a, v in _values(c) for p in value_phrases(c, a, v)} for c in found}
        found = {c for c in found if not any(set(said[c]) <= attr_words[o] for o in found - {c})}
    if len(found) != 1:
        raise ValueError(f"cannot tell the category of {text!r}: {sorted(found)}")
    cat = found.pop()
    triples = [(_norm(p), a, v) for a, v in _values(cat) for p in value_phrases(cat, a, v)]
    taken = np.zeros(len(t), dtype=bool)
    attrs: dict[str, str] = {}
    for phrase, a, v in sorted(triples, key=lambda x: -len(x[0])):
        for lo, hi in _find(phrase, t):
            if taken[lo:hi].any():
                continue
            if attrs.get(a, v) != v:
                raise ValueError(f"{text!r} names two values of {a}")
            attrs[a] = v
            taken[lo:hi] = True
    return cat, attrs


class GroundTruthScorer(nn.Module):
    """Features that encode the truth. Text: category (weight 10), each named attribute value (1), and the
    shapes whose first caption is exactly this text (0.5). Shape: its category, all its values, its identity.
    The score is their inner product, so the best shape for a text is one it describes, the best text for a
    shape is its own caption, and a true attribute value outscores a false one."""

    def __init__(self, data_dir: Path, split: str, categories: list[str], synth: bool) -> None:
        super().__init__()
        self.register_buffer("anchor", torch.zeros(1))
        self.categories, self.synth = categories, synth
        self.values = [(c, a, v) for c in CATEGORIES for a, vs in TAXONOMY[c].items() for v in vs] if synth else []
        self.recs = list(iter_records(data_dir, split))
        self.shape_of = {np.asarray(r.points, np.float32).tobytes(): i for i, r in enumerate(self.recs)}
        self.dim = len(categories) + len(self.values) + len(self.recs)

    def _vector(self, cat: str, attrs: dict[str, str], weights: tuple[float, float]) -> Tensor:
        v = torch.zeros(self.dim)
        v[self.categories.index(cat)] = weights[0]
        for a, val in attrs.items():
            v[len(self.categories) + self.values.index((cat, a, val))] = weights[1]
        return v

    def encode_text(self, captions: list[str]) -> TextFeatures:
        rows = []
        for text in captions:
            v = self._vector(*parse_caption(text, self.categories, self.synth), (10.0, 1.0))
            for i, r in enumerate(self.recs):
                if r.captions[0] == text:
                    v[len(self.categories) + len(self.values) + i] = 0.5
            rows.append(v)
        g = torch.stack(rows)  # (B, D)
        return TextFeatures(g[:, None], torch.ones(len(g), 1, dtype=torch.bool), g, [[t] for t in captions])

    def encode_points(self, points: Tensor, groups: object = None) -> PointFeatures:
        rows = []
        for p in points.numpy().astype(np.float32):
            i = self.shape_of[p.tobytes()]
            v = self._vector(self.recs[i].category, self.recs[i].attributes, (1.0, 1.0))
            v[len(self.categories) + len(self.values) + i] = 1.0
            rows.append(v)
        g = torch.stack(rows)
        return PointFeatures([g[:, None]], [torch.zeros(len(g), 1, 3)], g)

    def score(self, text: TextFeatures, shapes: PointFeatures) -> Tensor:
        return text.global_ @ shapes.global_.T


# --------------------------------------------------------------------------------------------------
# Data


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("evsynth") / "set"
    build_synth(out, 60, n_points=256, workers=1, progress=False)
    return out


def _write_set(out: Path, source: str, unique_captions: bool) -> Path:
    rng = np.random.default_rng(0)
    names = ["airplane", "bathtub", "guitar", "night_stand"]
    with DatasetWriter(out, source, shard_size=5) as w:
        for i in range(14):
            cat = names[i % 4]
            caption = f"a {cat.replace('_', ' ')}" + (f" with serial {i}" if unique_captions else "")
            pts = rng.normal(size=(256, 3)).astype(np.float32)
            w.add(ShapeRecord(f"s{i}", cat, {}, [caption], "test" if i < 10 else "train", pts / 4))
    return out


def _close(a: dict, b: dict) -> None:
    assert set(a) == set(b) == set(EVAL_KEYS)
    for k in EVAL_KEYS:
        assert (a[k] is None) == (b[k] is None), k
        if a[k] is not None:  # grounding: batched attention against explain's, float32 rounding apart
            assert a[k] == pytest.approx(b[k], abs=1e-5 if k == "grounding" else 1e-9), k


# --------------------------------------------------------------------------------------------------
# Tests


def test_parser_reads_every_text_the_evaluation_uses(synth: Path) -> None:
    recs = list(iter_records(synth, columns=["category", "attributes", "captions"]))
    for rec in recs:
        index = int(rec.id.rsplit("-", 1)[1])
        for draw in caption_draws(index, 0, len(rec.captions)):
            assert parse_caption(draw.text, list(CATEGORIES), True) == (rec.category, draw.attributes)
        first = caption_draws(index, 0, 1)[0]
        for a, values in TAXONOMY[rec.category].items():
            for v in values:
                swapped = {**rec.attributes, a: v}
                text = render_caption(rec.category, swapped, first.template, first.group, first.variant)
                assert parse_caption(text, list(CATEGORIES), True) == (rec.category, swapped)
    for q in spec_queries(0, 10, "test") + spec_queries(0, 10, "val"):
        assert parse_caption(q.text, list(CATEGORIES), True) == (q.category, q.attributes)
    for c in CATEGORIES:
        for p in class_prompts(c):
            assert parse_caption(p, list(CATEGORIES), True) == (c, {})


@pytest.mark.parametrize("split", ["test", "val"])
def test_ground_truth_scorer_is_perfect(synth: Path, split: str) -> None:
    oracle = GroundTruthScorer(synth, split, list(CATEGORIES), True)
    result = evaluate(oracle, synth, split=split, batch_size=4)
    assert result["n_shapes"] == len(oracle.recs) > 5
    assert result["grounding"] is None  # no HAF attention to point with
    assert all(result[k] == 1.0 for k in EVAL_KEYS if k not in ("n_shapes", "grounding")), result
    small = evaluate(oracle, synth, split=split, batch_size=3, rerank=10, max_shapes=5, seed=3)
    assert small["n_shapes"] == 5
    assert all(small[k] == 1.0 for k in EVAL_KEYS if k not in ("n_shapes", "grounding")), small


def test_ground_truth_scorer_on_imported_sets(tmp_path: Path) -> None:
    names = ["airplane", "bathtub", "guitar", "night_stand"]
    classes = _write_set(tmp_path / "mn", "modelnet40-h5", unique_captions=False)
    r = evaluate(GroundTruthScorer(classes, "test", names, False), classes)
    assert r["zeroshot_top1"] == 1.0 and r["n_shapes"] == 10
    assert all(r[k] is None for k in EVAL_KEYS if k not in ("zeroshot_top1", "n_shapes")), r
    inst = _write_set(tmp_path / "inst", "cap3d", unique_captions=True)
    r = evaluate(GroundTruthScorer(inst, "test", names, False), inst)
    assert all(r[k] == 1.0 for k in ("t2s_r1", "s2t_r1", "t2s_r10", "s2t_r10", "zeroshot_top1")), r
    assert r["attr_acc"] is None and r["spec_p1"] is None and r["spec_p10"] is None


def test_constant_scorer_earns_nothing(synth: Path) -> None:
    class Constant(GroundTruthScorer):
        def score(self, text: TextFeatures, shapes: PointFeatures) -> Tensor:
            return torch.zeros(len(text), len(shapes))

    r = evaluate(Constant(synth, "test", list(CATEGORIES), True), synth)
    assert r["zeroshot_top1"] == r["attr_acc"] == r["t2s_r1"] == r["s2t_r10"] == 0.0


def test_zero_shot_uses_the_whole_prompt_ensemble(synth: Path) -> None:
    class MisleadingFirstPrompt(GroundTruthScorer):
        """The bare prompt "a chair" is read as the next category; the other prompts are read right."""

        def encode_text(self, captions: list[str]) -> TextFeatures:
            wrong = {class_prompts(c)[0]: class_prompts(CATEGORIES[(i + 1) % 19])[1] for i, c in enumerate(CATEGORIES)}
            return super().encode_text([wrong.get(t, t) for t in captions])

    r = evaluate(MisleadingFirstPrompt(synth, "test", list(CATEGORIES), True), synth)
    assert r["zeroshot_top1"] == 1.0  # 7 of 8 prompts outvote the first


def _naive_reference(model: nn.Module, data: Path) -> dict:
    """Every metric from full score matrices over the whole test split, one model.score call each."""
    recs = list(iter_records(data, "test"))
    shapes = model.encode_points(torch.from_numpy(np.stack([r.points for r in recs])))
    texts = list(dict.fromkeys(r.captions[0] for r in recs))
    owner = np.array([texts.index(r.captions[0]) for r in recs])
    recall = M.instance_recall(model.score(model.encode_text(texts), shapes).numpy(), owner)  # (U, n) scores

    zs = np.stack([model.score(model.encode_text(class_prompts(c)), shapes).mean(0).numpy() for c in CATEGORIES])
    labels = [CATEGORIES.index(r.category) for r in recs]
    zeroshot = np.mean([zs[y, j] > np.delete(zs[:, j], y).max() for j, y in enumerate(labels)])

    pairs = []
    for j, r in enumerate(recs):
        d = caption_draws(int(r.id.rsplit("-", 1)[1]), 0, 1)[0]
        texts_j = [render_caption(r.category, r.attributes, d.template, d.group, d.variant)]
        for a, values in TAXONOMY[r.category].items():
            swaps = [{**r.attributes, a: v} for v in values if v != r.attributes[a]]
            texts_j += [render_caption(r.category, x, d.template, d.group, d.variant) for x in swaps]
        s = model.score(model.encode_text(texts_j), shapes).numpy()[:, j]
        pos = 1
        for values in TAXONOMY[r.category].values():
            pairs.append(all(s[0] > s[pos : pos + len(values) - 1]))
            pos += len(values) - 1

    queries = spec_queries(0, 10, "test")
    spec = model.score(model.encode_text([q.text for q in queries]), shapes).numpy()
    rel = [[M.spec_match((q.category, q.attributes), (r.category, r.attributes)) for r in recs] for q in queries]
    p = M.spec_precision(spec, np.array(rel), (1, 10))
    answerable = np.array(rel).any(axis=1)  # spec_cat_p10 counts the queries spec_p10 counts
    same_cat = np.array([[q.category == r.category for r in recs] for q in queries])
    cat = M.spec_precision(spec[answerable], same_cat[answerable], (10,))[10] if answerable.any() else None
    shares = []  # grounding, one shape at a time through model.explain
    if model.config.mode == "haf":
        for r in recs:
            e = model.explain(r.captions[0], r.points)
            named = attribute_tokens(r.category, r.attributes, r.captions[0], e.words, True)
            bits = {t: 1 << list(TAXONOMY[r.category]).index(a) for t, a in named.items()}
            shares += [share for _, share, _ in token_shares(e.point_attention, r.point_attrs, bits)]
    return {
        **{f"t2s_r{k}": v for k, v in recall["t2s"].items()},
        **{f"s2t_r{k}": v for k, v in recall["s2t"].items()},
        "zeroshot_top1": float(zeroshot),
        "attr_acc": float(np.mean(pairs)),
        "spec_p1": p[1],
        "spec_p10": p[10],
        "spec_cat_p10": cat,
        "grounding": float(np.mean(shares)) if shares else None,
        "n_shapes": len(recs),
    }


@pytest.mark.parametrize("mode", ["haf", "global"])
def test_tiny_model_matches_full_matrix_reference(synth: Path, mode: str) -> None:
    torch.manual_seed(0)
    model = create_model("tiny", n_points=256, mode=mode).eval()
    result = evaluate(model, synth, batch_size=64)
    assert set(result) == set(EVAL_KEYS) and result["n_shapes"] == 13
    assert (result["grounding"] is None) == (mode == "global")
    assert all(0.0 <= result[k] <= 1.0 for k in EVAL_KEYS if k != "n_shapes" and result[k] is not None)
    _close(evaluate(model, synth, batch_size=2, text_batch=3), result)  # chunking changes nothing
    with torch.no_grad():
        _close(result, _naive_reference(model, synth))


def test_rerank_shortlist_against_reference(synth: Path) -> None:
    """With 10 candidates for 13 shapes, a target is ranked by the full score among the global top 10 only."""
    torch.manual_seed(1)
    model = create_model("tiny", n_points=256).eval()
    short = evaluate(model, synth, rerank=10)
    recs = list(iter_records(synth, "test"))
    with torch.no_grad():
        shapes = model.encode_points(torch.from_numpy(np.stack([r.points for r in recs])))
        texts = list(dict.fromkeys(r.captions[0] for r in recs))
        tf = model.encode_text(texts)
        full, g = model.score(tf, shapes).numpy(), model.global_scores(tf, shapes).numpy()
    owner = np.array([texts.index(r.captions[0]) for r in recs])
    cand = np.argsort(-g, axis=1, kind="stable")[:, :10]
    ranks = M.relevant_rank(np.take_along_axis(full, cand, 1), owner[cand] == np.arange(len(texts))[:, None])
    for k, v in M.recall_at_k(ranks).items():
        assert short[f"t2s_r{k}"] == pytest.approx(v)
    cand = np.argsort(-g.T, axis=1, kind="stable")[:, :10]
    ranks = M.relevant_rank(np.take_along_axis(full.T, cand, 1), cand == owner[:, None])
    for k, v in M.recall_at_k(ranks).items():
        assert short[f"s2t_r{k}"] == pytest.approx(v)


def test_tiny_model_on_class_caption_set(tmp_path: Path) -> None:
    data = _write_set(tmp_path / "mn", "modelnet40-h5", unique_captions=False)
    r = evaluate(create_model("tiny", n_points=128), data)  # 256 stored points: a fixed subset of 128 is used
    assert 0.0 <= r["zeroshot_top1"] <= 1.0 and r["n_shapes"] == 10
    assert r["t2s_r1"] is None and r["attr_acc"] is None


def test_bad_arguments(synth: Path, tmp_path: Path) -> None:
    model = create_model("tiny", n_points=256)
    with pytest.raises(BadInputError, match="split"):
        evaluate(model, synth, split="dev")
    with pytest.raises(BadInputError, match="max_shapes"):
        evaluate(model, synth, max_shapes=0)
    with pytest.raises(BadInputError, match="rerank"):
        evaluate(model, synth, rerank=5)
    data = _write_set(tmp_path / "mn", "modelnet40-h5", unique_captions=False)
    with pytest.raises(BadInputError, match="no shapes"):
        evaluate(model, data, split="val")


def test_stored_groups_give_the_same_metrics(synth: Path, tmp_path: Path) -> None:
    """Every metric (grounding included) from the stored groups equals on-the-fly grouping's, exactly; the stored
    ones are used where they match the model's config, never where they do not, nor from an old data set."""
    torch.manual_seed(0)
    model = create_model("tiny", n_points=256).eval()
    calls = spy_groups(model)
    stored = evaluate(model, synth, batch_size=16)
    assert calls and all(calls)  # both passes and grounding
    calls.clear()
    old = evaluate(model, without_groups(synth, tmp_path / "old"), batch_size=16)  # same batches, same sums
    assert calls and not any(calls)
    assert stored == old and stored["grounding"] is not None
    # a set stored for another config (k of the last level) is not this model's: grouped on the fly
    other = GroupSpec(256, TINY.level_sizes, (8, 4, 2))
    build_synth(tmp_path / "other", 60, n_points=256, workers=1, progress=False, groups=(other,))
    calls.clear()
    assert evaluate(model, tmp_path / "other", batch_size=16) == stored and not any(calls)
    # shapes given each other's groups: the metrics move, so the equality above is no accident
    rolled = with_group_values(synth, tmp_path / "rolled", TINY, lambda blk: np.roll(blk, 1, axis=0))
    assert evaluate(model, rolled, batch_size=16) != stored
