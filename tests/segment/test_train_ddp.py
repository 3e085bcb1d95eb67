"""Training under DDP: two CPU processes with the gloo backend stay in step; only rank 0 writes."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank), DIFF4MMLITS_NO_PROGRESS="1")
    torch.set_num_threads(1)
    from segment_cases import make_case

    from diff4mmlits.config import resolve_config
    from diff4mmlits.distributed import cleanup_distributed, init_distributed
    from diff4mmlits.segment.dataset import prepare_case
    from diff4mmlits.segment.plan import fingerprint, plan_segmenter
    from diff4mmlits.segment.train import train_segmenter

    context = init_distributed("cpu")
    try:
        cases = [make_case(f"c{i}", seed=i) for i in range(3)]
        config = resolve_config("smoke").segment.model_copy(update={"epochs": 1, "steps_per_epoch": 2})
        plan = plan_segmenter(fingerprint(cases[:2]), config)
        prepared = [prepare_case(c, plan, config.phases) for c in cases]
        model_dir = Path(out) / f"model_rank{rank}"  # each rank is told its own folder: only rank 0 may write
        result = train_segmenter(prepared[:2], prepared[2:], plan, config, model_dir, seed=0, context=context)
        state = {k: v.detach().clone().contiguous() for k, v in result.network.state_dict().items()
                 if not k.startswith("skip_layers")}  # DynUNet aliases
        save_file(state, str(Path(out) / f"rank{rank}.safetensors"))
        (Path(out) / f"rank{rank}_val.txt").write_text(str(result.rows[-1]["val_dice_mean"]))
    finally:
        cleanup_distributed()


def test_ddp_with_two_gloo_processes_keeps_the_replicas_identical(tmp_path) -> None:
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    rank0 = load_file(str(tmp_path / "rank0.safetensors"))
    rank1 = load_file(str(tmp_path / "rank1.safetensors"))
    assert rank0.keys() == rank1.keys() and rank0
    for key in rank0:
        torch.testing.assert_close(rank0[key], rank1[key])  # gradients were all-reduced every step
    # validation Dice was all-reduced: both ranks report the same number
    assert (tmp_path / "rank0_val.txt").read_text() == (tmp_path / "rank1_val.txt").read_text()
    written = load_file(str(tmp_path / "model_rank0" / "weights.safetensors"))  # rank 0 wrote its folder
    for key in rank0:
        torch.testing.assert_close(written[key], rank0[key])
    assert not (tmp_path / "model_rank1").exists()  # rank 1 wrote nothing
