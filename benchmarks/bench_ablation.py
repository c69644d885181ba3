"""Fine-grained ablation: training variants at the same wall-clock budget, one row each.

Run: ``python -m benchmarks.bench_ablation [--minutes 7] [--n 20000] [--eval-max 1000] [--only NAME ...]``.

Each variant is one ``benchmarks.bench_train`` call (one mode, trained alone with 2 threads, DAP off so
that every row sees the same fixed policy, evaluated on a seeded sample of the test split: unseen
attribute combinations and held-out templates). Rows whose result file already exists under
``--runs-dir`` are read, not retrained (delete the folder to rerun everything). A variant that did
not help keeps its row.

Writes the ``quality_ablation`` section of benchmarks/RESULTS.md (``--no-write`` prints only).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.report import command_line, git_sha, machine_line, publish

LEGACY = '{"haf_readout":"cosine","point_context":false,"text_content_words":false}'
CONTEXT = '{"point_context":true}'
PHRASE = '{"text_phrase_tokens":true}'
LOCAL_GEOMETRY = '{"local_position":false}'
TEXT_FT1 = '{"text_finetune_layers":1}'

OFF = ["--set", "ground_weight=0"]  # rows measured before the grounding loss existed
# Every row runs without part drop (and part drop of any part), without text-feature noise and without the weight
# average, unless its own arguments say otherwise: the settings the rows were first measured with.
BEFORE_DROP = ["--set", "part_drop=0", "--set", "part_drop_optional=false", "--set", "text_noise=0", "--set",
               "weight_average=0"]  # fmt: skip
HAF = ["--modes", "haf", "--set", "ground_swaps=false"]  # haf, the grounding loss on the true captions only
# any part on half of the shapes; a view without a part its category needs is contrasted within its category
OPTIONAL = ["--set", "part_drop=0.5", "--set", "part_drop_optional=true"]  # the default part drop
DATA_100K = ["--data", "runs/synth-100000", "--n", "100000"]  # bench_train's folder for 100,000 shapes
DROP_WITHIN = ["--set", "part_drop=0.5", "--set", "part_drop_absent=true", "--set", "part_drop_within=true"]

# name -> (what it changes, bench_train arguments)
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "legacy": ("plain cosine readout, pre-transformer part tokens, every word piece scored, one swap negative",
               ["--modes", "haf", "--set", "swap_k=1", "--set", f"model_overrides={LEGACY}", *OFF]),
    "new": ("value readout + word-gated evidence, tokens in context, content words, 4 swaps, fine logit scale",
            ["--modes", "haf", "--set", f"model_overrides={CONTEXT}", *OFF]),
    "new_catbatch": ("new + category-grouped batches (4 categories per batch of 64)",
                     ["--modes", "haf", "--set", "batch_categories=4", "--set", f"model_overrides={CONTEXT}", *OFF]),
    "new_local": ("new, but HAF reads local tokens (patches, parts before the transformer): default before grounding",
                  ["--modes", "haf", *OFF]),
    "ground": ("new_local + grounding loss (weight 1): named words attend to their labelled part",
               ["--modes", "haf", "--set", "ground_weight=1.0", "--set", "ground_swaps=false"]),
    "ground_0.3": ("new_local + grounding loss (weight 0.3)",
                   ["--modes", "haf", "--set", "ground_weight=0.3", "--set", "ground_swaps=false"]),
    "ground_0.5": ("new_local + grounding loss (weight 0.5), true captions only: the default before part drop",
                   HAF),
    "ground_swaps": ("ground_0.5 + the words of attribute-swap captions grounded too (did not hold at 15 min)",
                     ["--modes", "haf", "--set", "ground_swaps=true"]),
    "ground_context": ("ground + HAF reads tokens in context (after the transformer)",
                       ["--modes", "haf", "--set", "ground_weight=1.0", "--set", "ground_swaps=false",
                        "--set", f"model_overrides={CONTEXT}"]),
    "swap_stated": ("ground_0.5 + swaps whose named attributes occur together in a train combination",
                    [*HAF, "--set", "swap_scope=stated"]),
    "swap_free": ("ground_0.5 + every one-attribute swap as a negative (held-out combinations named in negatives)",
                  [*HAF, "--set", "swap_scope=free"]),
    "part_0.5": ("ground_0.5 + part read-out loss (weight 0.5): a named word matches its labelled part's local "
                 "values across the batch",
                 [*HAF, "--set", "part_weight=0.5"]),
    "part_1": ("ground_0.5 + part read-out loss (weight 1)",
               [*HAF, "--set", "part_weight=1.0"]),
    "part_swap_1": ("ground_0.5 + the swap choice made by the named part's local values alone (weight 1)",
                    [*HAF, "--set", "part_swap_weight=1.0"]),
    "part_swap_3": ("ground_0.5 + the swap choice made by the named part's local values alone (weight 3)",
                    [*HAF, "--set", "part_swap_weight=3.0"]),
    "drop_0.25": ("ground_0.5 + part drop: a quarter of the shapes lose one labelled part, captioned by what is "
                  "left",
                  [*HAF, "--set", "part_drop=0.25"]),
    "drop_absent_0.25": ("drop_0.25, a wholly removed part captioned by its absent value (\"no armrests\")",
                         [*HAF, "--set", "part_drop=0.25",
                          "--set", "part_drop_absent=true"]),
    "drop_optional_0.5": ("ground_0.5 + part drop of optional parts only (armrests, a chimney), captioned absent, "
                          "on half of the shapes that have one: the default before text noise",
                          [*HAF, *OPTIONAL]),
    "drop_within_0.5": ("ground_0.5 + part drop of any part on half of the shapes (an optional one captioned absent); "
                        "a view that lost a part its category needs is contrasted only with its own category",
                        [*HAF, *DROP_WITHIN]),
    "drop_optional_0.5_seed1": ("drop_optional_0.5, seed 1 (model init, data order, captions, augmentation)",
                                [*HAF, *OPTIONAL, "--set", "seed=1"]),
    "noise_0.15": ("drop_optional_0.5 + Gaussian noise (std 0.15) on the text features before projection",
                   [*HAF, *OPTIONAL, "--set", "text_noise=0.15"]),
    "noise_0.05": ("drop_optional_0.5 + Gaussian noise (std 0.05) on the text features before projection: the "
                   "default",
                   [*HAF, *OPTIONAL, "--set", "text_noise=0.05"]),
    "noise_0.05_100k": ("noise_0.05 trained on 100,000 shapes instead of 20,000: the same 116 training "
                        "combinations, five times the shapes of each",
                        [*HAF, *OPTIONAL, "--set", "text_noise=0.05", *DATA_100K]),
    "global_noise_0.05_100k": ("global_noise_0.05 trained on 100,000 shapes",
                               ["--modes", "global", *OPTIONAL, "--set", "text_noise=0.05", *DATA_100K]),
    "global": ("global baseline (same encoders, 4 swaps on the global score)", ["--modes", "global"]),
    "global_drop_0.25": ("global + part drop on a quarter of the shapes",
                         ["--modes", "global", "--set", "part_drop=0.25"]),
    "ground_0.5_seed1": ("ground_0.5, seed 1 (model init, data order, captions, augmentation)",
                         [*HAF, "--set", "seed=1"]),
    "global_drop_optional_0.5": ("global + part drop of optional parts only, on half of the shapes that have one",
                                 ["--modes", "global", *OPTIONAL]),
    "global_seed1": ("global, seed 1", ["--modes", "global", "--set", "seed=1"]),
    "global_drop_optional_0.5_seed1": ("global_drop_optional_0.5, seed 1",
                                       ["--modes", "global", *OPTIONAL, "--set", "seed=1"]),
    "swap_0.5": ("noise_0.05 + part swap: half of the shapes take one labelled part from a shape of their category, "
                 "captioned with the values that result (never a test combination)",
                 [*HAF, *OPTIONAL, "--set", "text_noise=0.05", "--set", "part_swap=0.5"]),
    "swap_0.25": ("noise_0.05 + part swap on a quarter of the shapes",
                  [*HAF, *OPTIONAL, "--set", "text_noise=0.05", "--set", "part_swap=0.25"]),
    "global_swap_0.5": ("global + optional part drop + text noise 0.05 + part swap on half of the shapes",
                        ["--modes", "global", *OPTIONAL, "--set", "text_noise=0.05", "--set", "part_swap=0.5"]),
    "drop_0.25_noise": ("drop_0.25 (any part removed from a quarter of the shapes) + text noise 0.05: does the noise "
                        "keep categories apart where removing a chair's back blurred them",
                        [*HAF, "--set", "part_drop=0.25", "--set", "text_noise=0.05"]),
    "drop_0.25_generic": ("drop_0.25_noise, but a view that lost a part its category needs is captioned without the "
                          "category's name (\"an object with three legs and armrests\")",
                          [*HAF, "--set", "part_drop=0.25", "--set", "text_noise=0.05",
                           "--set", "part_drop_generic=true"]),
    "phrase": ("noise_0.05 + phrase tokens: HAF's word features come from each phrase of the caption encoded "
               "alone (\"with a conical crown\"), so a word cannot carry the rest of the combination",
               [*HAF, *OPTIONAL, "--set", "text_noise=0.05", "--set", f"model_overrides={PHRASE}"]),
    "local_geometry": ("noise_0.05 + HAF's patch and part tokens without absolute position (local geometry only; "
                       "position joins at the transformer), so a part reads the same wherever the rest puts it",
                       [*HAF, *OPTIONAL, "--set", "text_noise=0.05", "--set", f"model_overrides={LOCAL_GEOMETRY}"]),
    "text_ft1": ("noise_0.05 + MiniLM's last layer trained (at 0.05 x the learning rate), the lower ones cached",
                 [*HAF, *OPTIONAL, "--set", "text_noise=0.05", "--set", f"model_overrides={TEXT_FT1}"]),
    "stretch_0.15": ("noise_0.05 + each axis of a training shape scaled by its own factor in [0.85, 1.15], so a "
                     "part's absolute size stops telling which combination it came in",
                     [*HAF, *OPTIONAL, "--set", "text_noise=0.05", "--set", "stretch=0.15"]),
    "swap_fine_only": ("noise_0.05, but the attribute-swap loss trains HAF's fine path only (swap_global=false): "
                       "the global score stops learning which values go together",
                       [*HAF, *OPTIONAL, "--set", "text_noise=0.05", "--set", "swap_global=false"]),
    "swap_fine_only_seed1": ("swap_fine_only, seed 1",
                             [*HAF, *OPTIONAL, "--set", "text_noise=0.05", "--set", "swap_global=false",
                              "--set", "seed=1"]),
    "noise_0.05_seed1": ("noise_0.05, seed 1", [*HAF, *OPTIONAL, "--set", "text_noise=0.05", "--set", "seed=1"]),
    "fine_hard_8": ("noise_0.05 + the fine InfoNCE contrasts each caption with its 8 globally closest shapes in the "
                    "batch (and each shape with its 8 closest captions), the shortlist HAF re-ranks, instead of "
                    "the whole batch",
                    [*HAF, *OPTIONAL, "--set", "text_noise=0.05", "--set", "fine_negatives=8"]),
    "fine_hard_8_seed1": ("fine_hard_8, seed 1",
                          [*HAF, *OPTIONAL, "--set", "text_noise=0.05", "--set", "fine_negatives=8", "--set",
                           "seed=1"]),
    "average_0.995": ("noise_0.05, the run ending with an exponential moving average of its weights (decay 0.995)",
                      [*HAF, *OPTIONAL, "--set", "text_noise=0.05", "--set", "weight_average=0.995"]),
    "average_0.995_seed1": ("average_0.995, seed 1",
                            [*HAF, *OPTIONAL, "--set", "text_noise=0.05", "--set", "weight_average=0.995", "--set",
                             "seed=1"]),
    "global_average_0.995": ("global_noise_0.05, the run ending with its weight average (decay 0.995)",
                             ["--modes", "global", *OPTIONAL, "--set", "text_noise=0.05", "--set",
                              "weight_average=0.995"]),
    "global_noise_0.05": ("global + optional part drop + text noise 0.05 (the default's global counterpart)",
                          ["--modes", "global", *OPTIONAL, "--set", "text_noise=0.05"]),
    "global_free": ("global baseline, every one-attribute swap as a negative",
                    ["--modes", "global", "--set", "swap_scope=free"]),
}  # fmt: skip
KEYS = ("attr_acc", "zeroshot_top1", "spec_p1", "spec_p10", "t2s_r1", "s2t_r1", "grounding")


def run_variant(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """The variant's bench_train result (trained now unless its result file exists)."""
    folder = args.runs_dir / name
    done = sorted(folder.glob("*-haf.json")) + sorted(folder.glob("*-global.json"))
    if not done:
        cmd = [sys.executable, "-m", "benchmarks.bench_train", "--data", str(args.data), "--n", str(args.n),
               "--minutes", str(args.minutes), "--no-diagnose", "--eval-max", str(args.eval_max), "--no-write",
               "--runs-dir", str(folder), "--threads", "2", "--set", "dap=false", *BEFORE_DROP,
               *VARIANTS[name][1]]  # fmt: skip
        subprocess.run(cmd, check=True)
        done = sorted(folder.glob("*-haf.json")) + sorted(folder.glob("*-global.json"))
    result = json.loads(done[-1].read_text())
    if "error" in result:
        raise SystemExit(f"variant {name}: {result['error']}")
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=7.0)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--eval-max", type=int, default=1000)
    ap.add_argument("--data", type=Path, default=Path("runs/synth-20000"))
    ap.add_argument("--runs-dir", type=Path, default=Path("runs/ablation"))
    ap.add_argument("--only", nargs="*", default=None, help="variants to include (default all)")
    ap.add_argument("--note", default="", help="a sentence on the conditions of these runs, printed under the table")
    ap.add_argument("--section", default="quality_ablation", help="RESULTS.md section to write (one per screen)")
    ap.add_argument("--title", default="Fine-grained ablation", help="the section's heading")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    names = args.only or list(VARIANTS)
    results = {name: run_variant(name, args) for name in names}
    command = command_line("benchmarks.bench_ablation", argv)
    lines = [f"## {args.title} (`small`, {args.n:,} Align3D-Synth shapes, {args.minutes:g} min per row)", "",
             f"Command: `{command.strip()}` (git {git_sha()})  ", f"Machine: {machine_line()}.  ",
             f"Each row trained alone (2 threads, DAP off, policy fixed at mix 0.5, equal level weights), "
             f"evaluated on {args.eval_max} test shapes (unseen attribute combinations, held-out templates).", "",
             "| variant | what changes | steps | shapes/s | " + " | ".join(KEYS) + " |",
             "|---|---|---:|---:|" + "---:|" * len(KEYS)]  # fmt: skip
    for name, r in results.items():
        s, t = r["summary"], r["test"]
        cells = " | ".join("–" if t.get(k) is None else f"{t[k]:.3f}" for k in KEYS)
        lines.append(f"| {name} | {VARIANTS[name][0]} | {s['step']} | {s['shapes_per_s']:.0f} | {cells} |")
    if args.note:
        lines += ["", args.note]
    md = "\n".join(lines)
    publish(args.section, md, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
