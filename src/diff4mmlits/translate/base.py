"""What every translation method shares: the batch, the network container and the update step.

A method is a :class:`TranslationModel`: its networks live in one ``nn.ModuleDict`` (saved as one
safetensors file), its optimisers in a dict, and :meth:`TranslationModel.train_step` runs one
alternating generator / discriminator update and returns the losses as floats.

Data parallel training (``torchrun``): a GAN step calls each network several times before one
backward pass, which PyTorch's DDP reducer does not accept, so the gradients are averaged over the
processes by hand after each backward (:func:`average_gradients`, what DDP does, without its
hooks); every process starts from rank 0's parameters (:func:`broadcast_parameters`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from diff4mmlits.distributed import DistributedContext
from diff4mmlits.translate.networks import ImagePool


@dataclass
class Batch:
    """One training step's data: unpaired samples of both domains.

    Attributes:
        real_a: ``(B, C_a, *S)`` source images in [-1, 1].
        real_b: ``(B, C_b, *S)`` target images in [-1, 1].
        label_a: ``(B, 1, *S)`` long source labels (EssNet), or ``None``.
    """

    real_a: torch.Tensor
    real_b: torch.Tensor
    label_a: torch.Tensor | None = None

    def to(self, device: torch.device) -> Batch:
        label = self.label_a.to(device) if self.label_a is not None else None
        return Batch(self.real_a.to(device), self.real_b.to(device), label)


def set_requires_grad(modules: Iterable[nn.Module], flag: bool) -> None:
    """Freeze (``False``) or unfreeze the parameters of ``modules`` (discriminators during G steps)."""
    for module in modules:
        for parameter in module.parameters():
            parameter.requires_grad_(flag)


def average_gradients(modules: Iterable[nn.Module], context: DistributedContext) -> None:
    """Average the gradients of ``modules`` over all processes (no-op in one process)."""
    if not context.is_distributed:
        return
    for module in modules:
        for parameter in module.parameters():
            if parameter.grad is not None:
                dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
                parameter.grad.div_(context.world_size)


def broadcast_parameters(module: nn.Module, context: DistributedContext) -> None:
    """Copy rank 0's parameters and buffers to every process (no-op in one process)."""
    if not context.is_distributed:
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=0)


class TranslationModel(nn.Module):
    """Base of CycleGAN, EssNet and CUT.

    Subclasses fill :attr:`nets` (``generator_key`` names the source → target generator used for
    inference), build :attr:`optimizers` with :meth:`add_optimizer` and implement :meth:`train_step`.
    ``condition_channels`` trailing channels of a source sample are a condition (e.g. a tumor mask)
    that the generator reads but does not produce; target samples carry the same condition channels.
    """

    method: str = ""
    generator_key: str = "G_AB"
    needs_labels: bool = False

    def __init__(self, context: DistributedContext | None = None) -> None:
        super().__init__()
        self.nets = nn.ModuleDict()
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.pools: dict[str, ImagePool] = {}
        self.context = context or DistributedContext()

    @property
    def generator(self) -> nn.Module:
        """The source → target generator (what ``translate`` uses)."""
        return self.nets[self.generator_key]

    def add_optimizer(self, name: str, modules: Iterable[nn.Module], learning_rate: float, betas: tuple[float, float]) -> None:
        parameters = [p for module in modules for p in module.parameters()]
        self.optimizers[name] = torch.optim.Adam(parameters, lr=learning_rate, betas=tuple(betas))

    def update(self, name: str, loss: torch.Tensor, modules: Iterable[nn.Module]) -> None:
        """Backward ``loss``, average the gradients of ``modules`` over processes, step optimiser ``name``."""
        modules = list(modules)
        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(modules, self.context)
        optimizer.step()

    def train_step(self, batch: Batch, generator: torch.Generator) -> dict[str, float]:
        """One generator and one discriminator update; returns the losses (floats)."""
        raise NotImplementedError
