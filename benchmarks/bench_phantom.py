"""Speed of the built-in phantom: cases per second at size 64, on one core.

Baseline, measured in the same process: drawing ONE static phase of the same case (the PVP phase:
anatomy, tumors, blur and noise, no breathing and no other grids). The ratio says what the
four-phase case with breathing (inverse deformation for three phases, four grids, the truth
fields) costs relative to a plain single-phase phantom. Target (issue 3): ≤ 2 s per 64³ case.

    python benchmarks/bench_phantom.py [--size 64] [--cases 4]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("DIFF4MMLITS_NO_PROGRESS", "1")

import numpy as np  # noqa: E402

from diff4mmlits.data.phantom import make_phantom_case, write_phantom_case  # noqa: E402
from diff4mmlits.data.phantom.acquisition import acquire  # noqa: E402
from diff4mmlits.data.phantom.generate import draw_phase, plan_phantom_case  # noqa: E402

TARGET_S = 2.0


def static_single_phase(index: int, size: int) -> np.ndarray:
    """The baseline: one phase of case ``index``, no breathing (plan, draw PVP, blur and noise)."""
    plan = plan_phantom_case(index, seed=0, size=size)
    drawing = draw_phase(plan, "PVP")
    return acquire([drawing.hu], plan.acquisition, "PVP", np.random.default_rng(index))[0]


def seconds_per_case(function, cases: int) -> float:
    """Median wall time of ``function(index)`` over ``cases`` different cases (after one warm-up)."""
    function(1000)
    times = []
    for index in range(cases):
        start = time.perf_counter()
        function(index)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--cases", type=int, default=4)
    args = parser.parse_args()

    baseline = seconds_per_case(lambda i: static_single_phase(i, args.size), args.cases)
    generate = seconds_per_case(lambda i: make_phantom_case(i, seed=0, size=args.size), args.cases)
    with tempfile.TemporaryDirectory() as folder:
        written = seconds_per_case(lambda i: write_phantom_case(make_phantom_case(i, seed=0, size=args.size), folder), args.cases)
    shape = make_phantom_case(0, size=args.size).case.annotated.shape
    print(f"phantom, size {args.size} (PVP grid {shape[0]}×{shape[1]}×{shape[2]}), median of {args.cases} cases, one core")
    print(f"  baseline: one static phase (no breathing)  {baseline:6.3f} s   {1 / baseline:6.2f} cases/s")
    print(f"  make_phantom_case (4 phases + truth)      {generate:6.3f} s   {1 / generate:6.2f} cases/s   "
          f"ratio to baseline {generate / baseline:.2f}×")
    print(f"  make + write (18 NIfTI files, 2 JSON)     {written:6.3f} s   {1 / written:6.2f} cases/s   "
          f"ratio to baseline {written / baseline:.2f}×")
    verdict = "meets" if generate <= TARGET_S else "MISSES"
    print(f"  target ≤ {TARGET_S:.0f} s per case for generation: {verdict} ({generate:.2f} s)")


if __name__ == "__main__":
    main()
