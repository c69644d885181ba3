"""``daer classify``: zero-shot classification of one mesh or point file with a trained checkpoint."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def cmd_classify(args: argparse.Namespace) -> int:
    from daer.data.mesh_io import AUTO_UP, classify_up, load_points, read_up
    from daer.errors import BadInputError
    from daer.models.model import load_model
    from daer.models.packaged import resolve_checkpoint
    from daer.models.zeroshot import classify_read
    from daer.synth.taxonomy import CATEGORIES

    labels = [s.strip() for s in args.labels.split(",") if s.strip()] if args.labels else list(CATEGORIES)
    if len(set(labels)) != len(labels) or not labels:
        raise BadInputError(f"--labels needs distinct non-empty names, got {args.labels!r}")
    model = load_model(resolve_checkpoint(args.ckpt))
    up = classify_up(Path(args.file).suffix, args.up)
    auto = up == AUTO_UP
    points, _ = load_points(args.file, n_points=model.config.n_points, up=read_up(up))
    up, ranked = classify_read(model, points, labels, up)
    ranked = ranked[: max(1, args.top)]
    if args.json:
        print(json.dumps({"file": str(args.file), "up": up, "labels": ranked}))
    else:
        print(f"read with {up} up" + (" (chosen: the turn whose best label scores highest)" if auto else ""),
              file=sys.stderr)  # fmt: skip
        for r in ranked:
            print(f"{r['label']:<20} score {r['score']:+.4f}  p {r['prob']:.3f}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from daer.data.mesh_io import AUTO_UP, AUTO_UP_HELP, UP_ROTATIONS

    p = sub.add_parser("classify", help="zero-shot classify a mesh or point file with a trained checkpoint")
    p.add_argument("--ckpt", default=None, help="run folder (default: the packaged model)")
    p.add_argument("file", help="mesh (obj, ply, stl, off, glb, ...) or point file (npy, npz, xyz, ...)")
    p.add_argument("--labels", default=None, help="comma-separated labels (default: the 19 Align3D-Synth categories)")
    p.add_argument("--up", choices=[AUTO_UP, *sorted(UP_ROTATIONS)], default=None, help=AUTO_UP_HELP)
    p.add_argument("--top", type=int, default=5, help="how many labels to print (default 5)")
    p.add_argument("--json", action="store_true", help="print {file, up, labels: [{label, score, prob}]} as JSON")
    p.set_defaults(func=cmd_classify)
