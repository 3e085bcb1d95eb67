"""On-the-fly synthesis that does not starve the trainer (issue 14): a pool of painted cases, refreshed
in the background.

Painting a synthetic case (a diffusion sampling per tumor) takes far longer than a training step;
painting one for every synthetic sample, as on-the-fly synthesis first did, made training several
times slower. The pool holds ``size`` prepared synthetic cases. While epoch ``e`` trains, a
background thread paints the ``refresh`` cases that replace the pool's oldest at epoch ``e + 1``;
the epoch boundary only waits for that thread. What the pool holds at each epoch depends on the
seed alone (case ``k`` of generation ``g`` is painted from ``default_rng([seed, g, k])`` into normal
case ``(g·refresh + k) mod N``), never on thread timing, so a run is reproducible.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import numpy as np

from diff4mmlits.data.case import Case
from diff4mmlits.progress import progress
from diff4mmlits.segment.dataset import PreparedCase, prepare_case, prepare_resampled
from diff4mmlits.segment.plan import SegmenterPlan
from diff4mmlits.synthesize.painter import TumorPainter

log = logging.getLogger(__name__)


class SyntheticPool:
    """``size`` painted, prepared cases; ``refresh`` of them replaced every epoch (painted one epoch ahead).

    Args:
        normal: tumor-free cases to paint into (at the plan's spacing, or resampled after painting).
        painter: the tumor painter.
        plan, phases: how painted cases are prepared for the network.
        size: cases in the pool (at least 1).
        refresh: cases replaced per epoch (0 = the first pool all along).
        seed: the training seed.
    """

    def __init__(self, normal: Sequence[Case], painter: TumorPainter, plan: SegmenterPlan, phases: Sequence[str],
                 size: int, refresh: int, seed: int) -> None:
        if not normal:
            raise ValueError("a synthetic pool needs normal cases to paint into")
        self.normal, self.painter, self.plan, self.phases = list(normal), painter, plan, tuple(phases)
        self.size, self.refresh, self.seed = max(int(size), 1), max(min(int(refresh), int(size)), 0), seed
        self._cases: list[PreparedCase] = []
        self._epoch = -1
        self._next: list[PreparedCase] | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def paint(self, generation: int, k: int) -> PreparedCase:
        """Case ``k`` of ``generation`` (deterministic)."""
        index = (generation * max(self.refresh, 1) + k) % len(self.normal)
        painted = self.painter.paint(self.normal[index], np.random.default_rng([self.seed, generation, k]))
        painted = Case(f"{painted.case_id}_g{generation:03d}_{k:02d}", painted.phases, painted.label, painted.annotated_phase)
        if np.allclose(painted.annotated.spacing_mm, self.plan.target_spacing_mm):
            return prepare_resampled(painted, self.plan, self.phases)
        return prepare_case(painted, self.plan, self.phases)

    def _fresh(self, epoch: int) -> list[PreparedCase]:
        """The ``refresh`` cases that enter the pool at ``epoch`` (≥ 1)."""
        return [self.paint(epoch, k) for k in range(self.refresh)]

    def cases_for_epoch(self, epoch: int) -> list[PreparedCase]:
        """The pool at ``epoch`` (epochs in order; a resumed run rebuilds the pool of its epoch), and
        start painting the next epoch's fresh cases in the background."""
        if epoch != self._epoch + 1 or not self._cases:
            self._rebuild(epoch)
        else:
            if self._thread is not None and self._thread.is_alive():
                log.info("epoch %d: waiting for the synthetic pool's %d new painting(s), which take longer than an "
                         "epoch (a lower segment.synthetic_pool_refresh paints fewer)", epoch + 1, self.refresh)
            self._join()
            fresh = self._next or []
            self._cases = self._cases[len(fresh):] + fresh
        self._epoch = epoch
        self._start(epoch + 1)
        return list(self._cases)

    def _rebuild(self, epoch: int) -> None:
        """The pool of ``epoch`` painted here and now: generation 0, then each later epoch's fresh cases."""
        self._join(discard=True)
        painting = progress(total=self.size + self.refresh * epoch, desc="synthetic pool: painting", unit="case")
        cases = []
        for k in range(self.size):
            cases.append(self.paint(0, k))
            painting.update(1)
        for past in range(1, epoch + 1):
            fresh = self._fresh(past) if self.refresh else []
            cases = cases[len(fresh):] + fresh
            painting.update(len(fresh))
        painting.close()
        self._cases = cases

    def _start(self, epoch: int) -> None:
        if not self.refresh:
            self._next = []
            return

        def work() -> None:
            try:
                self._next = self._fresh(epoch)
            except BaseException as error:  # noqa: BLE001 - re-raised in the training thread
                self._error = error

        self._next, self._error = None, None
        self._thread = threading.Thread(target=work, name=f"synthetic-pool-{epoch}", daemon=True)
        self._thread.start()

    def _join(self, discard: bool = False) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None and not discard:
            error, self._error = self._error, None
            raise error

    def close(self) -> None:
        """Wait for a painting in flight (nothing is left running after training)."""
        self._join(discard=True)
