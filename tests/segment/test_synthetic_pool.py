"""The pool of painted cases that keeps on-the-fly synthesis from starving the trainer (issue 14)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from diff4mmlits.config import resolve_config
from diff4mmlits.segment.dataset import prepare_case, resample_case
from diff4mmlits.segment.plan import fingerprint, plan_segmenter
from diff4mmlits.segment.synthetic_pool import SyntheticPool
from diff4mmlits.segment.train import train_segmenter


class CountingPainter:
    """The test painter, counting its calls and the threads they came from."""

    def __init__(self, inner) -> None:
        self.inner, self.calls, self.threads = inner, 0, set()

    def paint(self, normal, rng):
        self.calls += 1
        self.threads.add(threading.current_thread().name)
        return self.inner.paint(normal, rng)


@pytest.fixture
def setup(tiny_case):
    cases = [tiny_case(f"c{i}", seed=i) for i in range(3)]
    config = resolve_config("smoke").segment
    plan = plan_segmenter(fingerprint(cases), config)
    normal = []
    for case in cases[1:]:
        label = case.label.with_array(np.minimum(case.label.array, 1))
        normal.append(resample_case(type(case)(case.case_id, case.phases, label), plan.target_spacing_mm))
    return cases, config, plan, normal


def _images(cases) -> list[np.ndarray]:
    return [c.image for c in cases]


def test_the_pool_paints_ahead_in_the_background_and_depends_on_the_seed_alone(setup, painter) -> None:
    _, config, plan, normal = setup
    counting = CountingPainter(painter)
    pool = SyntheticPool(normal, counting, plan, config.phases, size=4, refresh=2, seed=5)
    epochs = [_images(pool.cases_for_epoch(e)) for e in range(3)]
    pool.close()
    assert counting.calls == 4 + 2 * 3  # the first pool, then two per epoch (one epoch ahead), never per sample
    assert any(name.startswith("synthetic-pool") for name in counting.threads)
    assert all(np.array_equal(a, b) for a, b in zip(epochs[0][2:], epochs[1][:2]))  # the oldest two left
    assert not np.array_equal(epochs[1][-1], epochs[2][-1])
    # a resumed run (epoch 2 first) rebuilds the same pool, painted in the foreground
    again = SyntheticPool(normal, CountingPainter(painter), plan, config.phases, size=4, refresh=2, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(_images(again.cases_for_epoch(2)), epochs[2]))
    again.close()


def test_a_painting_error_in_the_background_reaches_the_trainer(setup, painter) -> None:
    _, config, plan, normal = setup

    class Failing(CountingPainter):
        def paint(self, normal, rng):
            if threading.current_thread().name.startswith("synthetic-pool"):
                raise RuntimeError("painter broke")
            return super().paint(normal, rng)

    pool = SyntheticPool(normal, Failing(painter), plan, config.phases, size=2, refresh=1, seed=0)
    pool.cases_for_epoch(0)
    with pytest.raises(RuntimeError, match="painter broke"):
        pool.cases_for_epoch(1)
    pool.close()


def test_training_on_the_fly_uses_the_pool(setup, painter, tmp_path) -> None:
    cases, config, plan, normal = setup
    config = config.model_copy(update={"synthetic_ratio": 0.5, "epochs": 2, "synthetic_pool": 3,
                                       "synthetic_pool_refresh": 1})
    counting = CountingPainter(painter)
    prepared = [prepare_case(cases[0], plan, config.phases)]
    result = train_segmenter(prepared, [], plan, config, tmp_path / "m", seed=0, normal=normal, painter=counting)
    assert counting.calls == 3 + 2  # not one per synthetic sample
    assert all(row["synthetic_share"] > 0 for row in result.rows)


def test_the_pool_says_what_it_paints_and_when_the_trainer_waits_for_it(setup, painter, caplog, monkeypatch) -> None:
    """Filling the first pool with the paper preset's painter took minutes on a CPU without a line."""
    import logging

    _, config, plan, normal = setup
    monkeypatch.delenv("DIFF4MMLITS_NO_PROGRESS", raising=False)
    monkeypatch.setenv("DIFF4MMLITS_PROGRESS", "lines")
    release = threading.Event()

    class Slow(CountingPainter):
        def paint(self, normal, rng):  # the background painting waits until the trainer has said it waits
            if threading.current_thread().name.startswith("synthetic-pool"):
                assert release.wait(60)
            return super().paint(normal, rng)

    class ReleaseOnWait(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "waiting for the synthetic pool" in record.getMessage():
                release.set()

    handler = ReleaseOnWait()
    logging.getLogger("diff4mmlits.segment.synthetic_pool").addHandler(handler)
    try:
        with caplog.at_level(logging.INFO):
            pool = SyntheticPool(normal, Slow(painter), plan, config.phases, size=2, refresh=1, seed=0)
            pool.cases_for_epoch(0)
            pool.cases_for_epoch(1)
            pool.close()
    finally:
        logging.getLogger("diff4mmlits.segment.synthetic_pool").removeHandler(handler)
        release.set()
    messages = [r.getMessage() for r in caplog.records]
    assert [m.split(",")[0] for m in messages if m.startswith("synthetic pool")] == [
        "synthetic pool: painting: 1/2 case (50%)", "synthetic pool: painting: 2/2 cases (100%)"]
    assert any(m.startswith("epoch 2: waiting for the synthetic pool's 1 new painting") for m in messages)
