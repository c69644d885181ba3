"""Where fine-grained alignment fails: four cells, per attribute, per score component, and two probes.

Run: ``python -m benchmarks.bench_diagnose --run RUN [--run RUN ...] --data DIR [--shapes 400]``.

For each trained run, on Align3D-Synth shapes of the *train* split (seen attribute combinations) and the
*test* split (unseen combinations), each captioned with a full-attribute caption rendered from the
*training* templates and from the *held-out* ones (same shapes, same seeded template draws):

1. attribute accuracy in the four cells {seen, unseen combination} × {training, held-out template}, and
   zero-shot top-1 per split (class prompts do not depend on the template group);
2. per-attribute accuracy on the unseen × held-out cell, grouped into counts, presence and other values;
3. the same accuracy with the score taken apart: global cosine alone (mix 0), fine HAF alone (mix 1),
   each level alone, the policy's fused score, and the sum of the two terms' logits (each at its own
   learned temperature, as the losses see them);
4. two linear probes (softmax regression, fitted on train-split items, tested on test-split items):
   the run's point embeddings -> each attribute's value (the point-side ceiling on unseen combinations),
   and the frozen text tower's mean-pooled caption features -> the value named in the caption, fitted on
   training-template captions, tested on held-out-template ones (the text-side ceiling).

Writes the ``diagnosis`` section of benchmarks/RESULTS.md (``--no-write`` prints only).
"""

from __future__ import annotations

import argparse
import json
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.report import command_line, git_sha, machine_line, publish

COUNT_VALUES = {"0", "1", "2", "3", "4", "5", "6", "7", "8"}
PRESENCE_VALUES = {"yes", "no"}


def kind_of(values: tuple[str, ...]) -> str:
    """'count', 'presence' or 'other' for an attribute's value set."""
    if set(values) <= COUNT_VALUES:
        return "count"
    if set(values) == PRESENCE_VALUES:
        return "presence"
    return "other"


def load_shapes(data: Path, split: str, n: int, seed: int) -> list[Any]:
    """A seeded sample of ``n`` records of one split (points included)."""
    from daer.data.shards import iter_records, read_manifest

    total = int(read_manifest(data)["counts"].get(split, 0))
    keep = set(np.random.default_rng([seed, 0xD1A]).choice(total, min(n, total), replace=False).tolist())
    return [r for i, r in enumerate(iter_records(data, split)) if i in keep]


def caption_sets(rec: Any, group: str, dseed: int) -> list[tuple[str, list[str]]]:
    """[(attribute, [true caption, caption with each other value])] for one shape, from one template group."""
    from daer.synth.captions import n_templates, render_caption
    from daer.synth.taxonomy import TAXONOMY

    rng = np.random.default_rng([dseed, zlib.crc32(rec.id.encode()), 0xC311])
    template, variant = int(rng.integers(n_templates(group))), int(rng.integers(1 << 16))
    out = []
    for name, values in TAXONOMY[rec.category].items():
        true = render_caption(rec.category, rec.attributes, template, group, variant)
        others = [render_caption(rec.category, {**rec.attributes, name: v}, template, group, variant)
                  for v in values if v != rec.attributes[name]]  # fmt: skip
        out.append((name, [true, *others]))
    return out


@torch.no_grad()
def score_parts(model: Any, captions: list[str], shapes: Any) -> dict[str, np.ndarray]:
    """Scores of each caption with one encoded shape, by component: global, per level (haf), fine, fused."""
    text = model.encode_text(captions)
    g = model.global_scores(text, shapes)[:, 0]
    out = {"global": g.numpy()}
    if model.haf is not None:
        levels = model.haf.level_scores(text, shapes)[:, 0]  # (C, L)
        for lvl in range(levels.shape[1]):
            out[f"level{lvl + 1}"] = levels[:, lvl].numpy()
        out["fine"] = model.haf.fine(levels).numpy()
        out["fused"] = model.haf.fuse(levels, g).numpy()
        # The two InfoNCE logits added (each term at its own learned temperature): a product of experts.
        fine_scale = model.fine_logit_scale_value()
        out["logit_sum"] = (model.logit_scale_value() * g + fine_scale * model.haf.fine(levels)).numpy()
    else:
        out["fused"] = out["global"]
    return out


def has_conflict(category: str, attributes: dict[str, str], name: str, dseed: int) -> bool:
    """Whether a *trained* combination equals this shape's except in attribute ``name``: the swapped caption
    then names a combination seen in training, and a model that memorised combinations prefers it."""
    from daer.synth.splits import split_of
    from daer.synth.taxonomy import TAXONOMY

    values = [v for v in TAXONOMY[category][name] if v != attributes[name]]
    return any(split_of(category, {**attributes, name: v}, dseed) == "train" for v in values)


def attribute_cells(model: Any, recs: dict[str, list[Any]], dseed: int) -> dict[str, Any]:
    """Accuracy per (split, template group), per attribute and per score component, and on unseen shapes
    split by :func:`has_conflict`."""
    from daer.synth.taxonomy import TAXONOMY

    cells: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    per_attr: dict[str, list[bool]] = defaultdict(list)
    conflict: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for split, items in recs.items():
        for group in ("train", "heldout"):
            for rec in items:
                shapes = model.encode_points(torch.from_numpy(np.asarray(rec.points, dtype=np.float32))[None])
                sets = caption_sets(rec, group, dseed)
                parts = score_parts(model, [c for _, caps in sets for c in caps], shapes)
                at = 0
                for name, caps in sets:
                    for comp, s in parts.items():
                        s = s[at : at + len(caps)]
                        cells[f"{split}/{group}"][comp].append(bool(s[0] > s[1:].max()))
                        if split == "test" and group == "heldout":
                            kind = "conflict" if has_conflict(rec.category, rec.attributes, name, dseed) else "free"
                            conflict[kind][comp].append(bool(s[0] > s[1:].max()))
                        if comp == "fused" and split == "test" and group == "heldout":
                            per_attr[f"{rec.category}.{name}"].append(bool(s[0] > s[1:].max()))
                    at += len(caps)
    by_kind: dict[str, list[bool]] = defaultdict(list)
    for key, oks in per_attr.items():
        cat, name = key.split(".")
        by_kind[kind_of(tuple(TAXONOMY[cat][name]))].extend(oks)
    return {
        "cells": {c: {k: float(np.mean(v)) for k, v in comps.items()} for c, comps in cells.items()},
        "per_attribute": {k: (float(np.mean(v)), len(v)) for k, v in sorted(per_attr.items())},
        "by_kind": {k: (float(np.mean(v)), len(v)) for k, v in by_kind.items()},
        "conflict": {k: {c: (float(np.mean(v)), len(v)) for c, v in comps.items()} for k, comps in conflict.items()},
    }


@torch.no_grad()
def zeroshot(model: Any, items: list[Any]) -> float:
    from daer.synth.captions import class_prompts
    from daer.synth.taxonomy import CATEGORIES

    prompts = [class_prompts(c) for c in CATEGORIES]
    text = model.encode_text([p for ps in prompts for p in ps])
    bounds = np.cumsum([0, *[len(p) for p in prompts]])
    right = 0
    for start in range(0, len(items), 64):
        chunk = items[start : start + 64]
        shapes = model.encode_points(torch.from_numpy(np.stack([np.asarray(r.points, np.float32) for r in chunk])))
        s = model.score(text, shapes).numpy()  # (K·P, B)
        per_class = np.stack([s[bounds[k] : bounds[k + 1]].mean(0) for k in range(len(prompts))], 1)  # (B, K)
        right += sum(CATEGORIES[int(i)] == r.category for i, r in zip(per_class.argmax(1), chunk, strict=True))
    return right / len(items)


def probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> float:
    """Test accuracy of a softmax regression (standardised features, L2, full-batch LBFGS)."""
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    xt = torch.tensor((x_train - mu) / sd, dtype=torch.float32)
    xs = torch.tensor((x_test - mu) / sd, dtype=torch.float32)
    classes = int(max(y_train.max(), y_test.max())) + 1
    lin = torch.nn.Linear(xt.shape[1], classes)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=200, line_search_fn="strong_wolfe")
    yt = torch.tensor(y_train)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(xt), yt) + 1e-3 * lin.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float((lin(xs).argmax(1).numpy() == y_test).mean())


@torch.no_grad()
def probes(model: Any, recs: dict[str, list[Any]], dseed: int) -> dict[str, float]:
    """Mean probe accuracy over attributes: point side (unseen combinations) and text side (held-out templates)."""
    from daer.synth.taxonomy import TAXONOMY

    feats = {}
    for split, items in recs.items():
        pts = torch.from_numpy(np.stack([np.asarray(r.points, np.float32) for r in items]))
        feats[split] = torch.cat([model.encode_points(pts[i : i + 64]).global_ for i in range(0, len(pts), 64)]).numpy()
    point_acc, text_acc = [], []
    backbone = model.text
    for cat, attrs in TAXONOMY.items():
        for name, values in attrs.items():
            idx = {s: [i for i, r in enumerate(recs[s]) if r.category == cat] for s in recs}
            if min(len(v) for v in idx.values()) < 5:
                continue
            y = {s: np.array([values.index(recs[s][i].attributes[name]) for i in idx[s]]) for s in recs}
            if len(set(y["train"].tolist())) > 1:
                point_acc.append(probe(feats["train"][idx["train"]], y["train"], feats["test"][idx["test"]], y["test"]))
            # text side: captions of the same shapes naming the attribute, from each template group
            tx = {}
            for group, split in (("train", "train"), ("heldout", "test")):
                caps = [caption_sets(recs[split][i], group, dseed)[list(attrs).index(name)][1][0] for i in idx[split]]
                tx[group] = _mean_pooled(backbone, caps)
            if len(set(y["train"].tolist())) > 1:
                text_acc.append(probe(tx["train"], y["train"], tx["heldout"], y["test"]))
    return {"point_probe": float(np.mean(point_acc)), "text_probe": float(np.mean(text_acc)),
            "probed_attributes": len(point_acc)}  # fmt: skip


def _mean_pooled(text_encoder: Any, captions: list[str]) -> np.ndarray:
    """Frozen backbone features, mean-pooled over real tokens (the tiny encoder: its global embedding)."""
    if not hasattr(text_encoder, "_frozen_hidden"):
        return text_encoder(captions).global_.numpy()
    return np.stack([h.astype(np.float32).mean(0) for _, h in text_encoder._frozen_hidden(captions)])


def diagnose(run: Path, data: Path, n: int, seed: int) -> dict[str, Any]:
    from daer.data.shards import read_manifest
    from daer.models.model import load_model

    model = load_model(run)
    dseed = int(read_manifest(data).get("seed", 0))
    recs = {"train": load_shapes(data, "train", n, seed), "test": load_shapes(data, "test", n, seed)}
    out = attribute_cells(model, recs, dseed)
    out["zeroshot"] = {s: zeroshot(model, items) for s, items in recs.items()}
    out.update(probes(model, recs, dseed))
    out["mode"] = model.config.mode
    out["policy"] = model.haf.get_policy() if model.haf is not None else None
    return out


def render(args: argparse.Namespace, results: dict[str, dict[str, Any]], command: str) -> str:
    lines = ["## Diagnosis: where fine-grained alignment fails", ""]
    lines.append(f"Command: `{command}` (git {git_sha()})  ")
    lines.append(f"Machine: {machine_line()}. Data: `{args.data}`, {args.shapes} shapes per split (seeded sample).")
    lines.append("")
    lines.append("attr_acc of the fused score in four cells (rows: shapes; columns: caption templates), and zero-shot:")
    lines.append("")
    lines.append(
        "| run | mode | seen × train tpl | seen × held-out tpl | unseen × train tpl | unseen × held-out "
        "tpl | zero-shot seen | zero-shot unseen | point probe (unseen) | text probe (held-out tpl) |"
    )
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        c = r["cells"]
        lines.append(
            f"| {name} | {r['mode']} | {c['train/train']['fused']:.3f} | {c['train/heldout']['fused']:.3f} "
            f"| {c['test/train']['fused']:.3f} | {c['test/heldout']['fused']:.3f} | {r['zeroshot']['train']:.3f} "
            f"| {r['zeroshot']['test']:.3f} | {r['point_probe']:.3f} | {r['text_probe']:.3f} |"
        )
    lines.append("")
    lines.append("Score components on unseen × held-out (attr_acc when only that part of the score ranks):")
    lines.append("")
    lines.append("| run | global | fine | level 1 | level 2 | level 3 | fused | logit sum | policy |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, r in results.items():
        c = r["cells"]["test/heldout"]

        def f(k: str, c: dict[str, float] = c) -> str:
            return f"{c[k]:.3f}" if k in c else "–"

        pol = json.dumps(r["policy"]) if r["policy"] else "–"
        lines.append(f"| {name} | {f('global')} | {f('fine')} | {f('level1')} | {f('level2')} | {f('level3')} "
                     f"| {f('fused')} | {f('logit_sum')} | `{pol}` |")  # fmt: skip
    lines.append("")
    lines.append(
        "Unseen × held-out, split by whether a trained combination differs from the shape's in that "
        "attribute only (*conflict*: the swapped caption names a seen combination) or not (*free*):"
    )
    lines.append("")
    lines.append("| run | case | n | global | fine | level 1 | level 2 | level 3 | fused |")
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        for case in ("conflict", "free"):
            c = r["conflict"].get(case, {})
            if not c:
                continue
            cells = " | ".join(f"{c[k][0]:.3f}" if k in c else "–"
                               for k in ("global", "fine", "level1", "level2", "level3", "fused"))  # fmt: skip
            lines.append(f"| {name} | {case} | {c['fused'][1]} | {cells} |")
    lines.append("")
    lines.append("By kind of attribute (unseen × held-out, fused): " + "; ".join(
        f"**{name}**: " + ", ".join(f"{k} {v[0]:.3f} (n={v[1]})" for k, v in sorted(r["by_kind"].items()))
        for name, r in results.items()
    ) + ".")  # fmt: skip
    lines.append("")
    first = next(iter(results))
    worst = sorted(results[first]["per_attribute"].items(), key=lambda kv: kv[1][0])[:10]
    lines.append(f"Ten weakest attributes of `{first}` (unseen × held-out, fused): "
                 + ", ".join(f"{k} {v[0]:.2f}" for k, v in worst) + ".")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="append", required=True, help="trained run folder (repeatable); NAME=PATH names it")
    ap.add_argument("--data", type=Path, required=True, help="the Align3D-Synth data set the runs trained on")
    ap.add_argument("--shapes", type=int, default=400, help="shapes per split (default 400)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: daer's thread policy)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    from daer.utils.threads import configure_threads

    configure_threads(args.threads)
    results = {}
    for spec in args.run:
        name, _, path = spec.rpartition("=")
        results[name or Path(path).name] = diagnose(Path(path), args.data, args.shapes, args.seed)
        print(name or path, json.dumps(results[name or Path(path).name]["cells"]["test/heldout"]), flush=True)
    command = command_line("benchmarks.bench_diagnose", argv)
    md = render(args, results, command)
    publish("quality_diagnosis", md, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
