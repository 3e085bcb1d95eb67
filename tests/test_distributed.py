"""Devices, single-process distributed context, case sharding."""

from __future__ import annotations

import pytest
import torch

from diff4mmlits.distributed import (
    DistributedContext,
    all_reduce_mean,
    init_distributed,
    parse_shard,
    resolve_device,
    shard,
    unwrap,
    wrap_ddp,
)
from diff4mmlits.errors import InputError


@pytest.mark.parametrize(("text", "expected"), [(None, (1, 1)), ("", (1, 1)), ("1/1", (1, 1)), ("2/4", (2, 4)), ("4/4", (4, 4))])
def test_parse_shard(text: str | None, expected: tuple[int, int]) -> None:
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["0/4", "5/4", "1/0", "-1/2", "2", "a/b", "1/2/3", "1.5/2"])
def test_parse_shard_errors(text: str) -> None:
    with pytest.raises(InputError, match=r"--shard") as err:
        parse_shard(text)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("n_items", [0, 1, 5, 12])
@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_shards_are_disjoint_and_cover_everything(n_items: int, count: int) -> None:
    items = [f"case_{i:03d}" for i in range(n_items)]
    parts = [shard(items, index, count) for index in range(1, count + 1)]
    flat = [item for part in parts for item in part]
    assert sorted(flat) == items and len(flat) == len(set(flat))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1  # balanced
    assert all(part == [i for i in items if i in part] for part in parts)  # order kept


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InputError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA GPU is visible"):
            resolve_device("cuda:0")


def test_single_process_context(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    context = init_distributed("cpu")
    assert context == DistributedContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    assert context.is_main and not context.is_distributed
    model = torch.nn.Linear(2, 1)
    assert wrap_ddp(model, context) is model and unwrap(model) is model
    assert all_reduce_mean(2.5, context) == 2.5
    assert not DistributedContext(rank=1, world_size=2).is_main
