"""Score the segmenters that ``bench_segment.py`` trained on a larger phantom test set (issue 14).

``bench_segment.py`` tests on a few cases (``--test 6``): with two or three tumors per case, which
six cases are drawn moves the per-case Dice by several points, on top of what the training seed
moves. This script makes ``--test`` default-site and ``--second`` second-site cases once (the same
phantom indices and registration as ``bench_segment.py``: test cases from 100, so its first six
test cases are the benchmark's own; second-site cases are by default the first ``--second`` test
patients scanned at the second site, ``--second-patients own`` the second site's own from 200) and
scores every model folder given on them, printing one row per model and writing ``rescore.json``
beside the first folder's parent.

    python benchmarks/rescore_segment.py /tmp/bench_segment/multi-cascade_seed* \
        /tmp/bench_segment/multi-syn-cascade_seed* --test 30 --second 30

``--phases AP,PVP`` scores studies that hold only those phases (the others removed from every case,
so prediction fills their channels by its missing-phase rule, segment/inputs.py): what a model
trained with ``segment.phase_dropout_prob`` is for.

Models are grouped by their folder name without ``_seedN`` (and the parent folder, where two
groups share a name); each group's mean ± sd over its models is printed after the rows.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("DIFF4MMLITS_NO_PROGRESS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_segment  # noqa: E402  (benchmarks/bench_segment.py: the same cases, the same scores)
from diff4mmlits import PHASES  # noqa: E402
from diff4mmlits.evaluate.metrics import SIZE_CLASSES  # noqa: E402


def group_name(model_dir: Path) -> str:
    """``parent/name`` without the ``_seedN`` suffix: the models of one benchmark arm."""
    arm = re.sub(r"_seed\d+$", "", model_dir.name)
    return f"{model_dir.parent.name}/{arm}"


def mean_sd(values: list[float]) -> str:
    """``mean ± sd`` in per cent (sd over the values, ddof 1; 0 for one value)."""
    array = 100 * np.asarray(values)
    return f"{array.mean():.1f} ± {array.std(ddof=1) if len(array) > 1 else 0.0:.1f}"


def keep_phases(case: bench_segment.Case, phases: list[str]) -> bench_segment.Case:
    """The case with only ``phases`` (a study that lacks the others)."""
    return dataclasses.replace(case, phases={name: volume for name, volume in case.phases.items() if name in phases})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", type=Path, nargs="+", help="model folders written by bench_segment.py (NAME_seedN)")
    parser.add_argument("--test", type=int, default=30, help="default-site test cases (indices 100…)")
    parser.add_argument("--second", type=int, default=30, help="second-site test cases (the first N test patients at the second site; "
                        "with --second-patients own, the site's own from index 200)")
    parser.add_argument("--second-patients", default="test", choices=["test", "own"],
                        help="second-site cases: the test patients scanned at the second site, or its own (from 200)")
    parser.add_argument("--size", type=int, default=48, help="the phantom size the models were trained on")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--phases", default=None,
                        help="keep only these phases of every case, e.g. PVP or AP,PVP (the annotated PVP among them)")
    parser.add_argument("--out", type=Path, default=None, help="rescore.json (default: beside the first model's folder)")
    args = parser.parse_args()
    kept = None if args.phases is None else [name.strip() for name in args.phases.split(",")]
    if kept is not None and ("PVP" not in kept or not set(kept) <= set(PHASES)):
        raise SystemExit(f"--phases {args.phases}: give phases of {', '.join(PHASES)}, the annotated PVP among them")
    missing = [str(m) for m in args.models if not (m / "plan.json").is_file() and not any(m.glob("*/plan.json"))]
    if missing:
        raise SystemExit(f"not a segmenter folder (no plan.json): {', '.join(missing)}")
    start = time.time()
    test, _, _ = bench_segment.make_cases(range(100, 100 + args.test), args.data_seed, "default", args.size, False)
    second = bench_segment.second_site_cases(args.second, args.data_seed, args.size, args.second_patients)
    if kept is not None:
        test, second = ([keep_phases(case, kept) for case in cases] for cases in (test, second))
    print(f"data: {args.test} test and {args.second} second-site cases ({args.second_patients} patients) of size "
          f"{args.size} in {time.time() - start:.0f} s; phases {','.join(kept or PHASES)}", flush=True)
    rows: dict[str, dict[str, dict[str, float]]] = {}
    for model in args.models:
        rows[str(model)] = {"test": bench_segment.scores(model, test), "second": bench_segment.scores(model, second)}
        t, s = rows[str(model)]["test"], rows[str(model)]["second"]
        print(f"{group_name(model)} {model.name[-5:]}: per case {100 * t['tumor_dice_per_case']:.1f}, sensitivity "
              f"{100 * t['tumor_sensitivity']:.1f}, precision {100 * t['tumor_precision']:.1f}, global "
              f"{100 * t['tumor_dice_global']:.1f}, per lesion {100 * t['tumor_dice_per_lesion']:.1f}; "
              f"second site per case {100 * s['tumor_dice_per_case']:.1f}, global {100 * s['tumor_dice_global']:.1f}",
              flush=True)
    groups: dict[str, list[str]] = {}
    for model in args.models:
        groups.setdefault(group_name(model), []).append(str(model))
    print("\ngroup: test per case / global / per lesion; lesion recall small / medium / large; "
          "second site per case (mean ± sd over models)")
    first = rows[str(args.models[0])]["test"]
    print("true lesions in the test set: " + ", ".join(f"{size} {first[f'lesions_true_{size}']:.0f}" for size in SIZE_CLASSES))
    for name, members in groups.items():
        cells = [mean_sd([rows[m][split][metric] for m in members]) for split, metric in
                 (("test", "tumor_dice_per_case"), ("test", "tumor_dice_global"), ("test", "tumor_dice_per_lesion"),
                  *(("test", f"lesion_recall_{size}") for size in SIZE_CLASSES), ("second", "tumor_dice_per_case"))]
        print(f"{name} ({len(members)}): {cells[0]} / {cells[1]} / {cells[2]}; {cells[3]} / {cells[4]} / {cells[5]}; {cells[6]}")
    out = args.out or args.models[0].parent.parent / "rescore.json"
    out.write_text(json.dumps({"test": args.test, "second": args.second, "second_patients": args.second_patients,
                              "size": args.size, "phases": kept, "models": rows}, indent=1))
    print(f"\nscores in {out}")


if __name__ == "__main__":
    main()
