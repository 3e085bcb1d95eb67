"""PatchNCE (Park et al. 2020, CUT): a patch of the output should match the input patch at the same place.

Features of the input and of the output are taken from several layers of the generator's encoder;
at each layer the same random locations are sampled in both (:class:`PatchSampleMLP` returns the
locations it drew, and they are passed back for the second call), projected by a small two-layer
MLP and L2-normalised. For every output patch (the query) the input patch at the same location is
the positive and the other sampled input patches *of the same image* are the negatives; InfoNCE
with temperature τ (0.07)::

    ℓ = -log  exp(q·k⁺/τ) / (exp(q·k⁺/τ) + Σ_neg exp(q·k⁻/τ))
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from diff4mmlits.translate.networks import init_gan_weights


class PatchSampleMLP(nn.Module):
    """One MLP head (Linear → ReLU → Linear) per encoder layer, applied to sampled locations."""

    def __init__(self, in_channels: Sequence[int], features: int = 256) -> None:
        super().__init__()
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(int(c), features), nn.ReLU(inplace=True), nn.Linear(features, features)) for c in in_channels
        )
        init_gan_weights(self)

    def forward(
        self,
        features: Sequence[torch.Tensor],
        num_patches: int,
        locations: Sequence[torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Sample and project.

        Args:
            features: one ``(B, C_l, *S_l)`` map per layer.
            num_patches: locations per layer (fewer when a map is smaller).
            locations: the flat location indices to reuse (one ``(P_l,)`` long tensor per layer);
                ``None`` draws new ones with ``generator``.

        Returns:
            ``(projected, locations)``: one ``(B, P_l, features)`` unit-norm tensor and one
            ``(P_l,)`` index tensor per layer. The same locations serve every image of the batch.
        """
        projected, used = [], []
        for index, (feature, head) in enumerate(zip(features, self.heads)):
            flat = feature.flatten(2).transpose(1, 2)  # (B, N, C)
            if locations is None:
                count = min(num_patches, flat.shape[1])
                ids = torch.randperm(flat.shape[1], generator=generator)[:count].to(flat.device)
            else:
                ids = locations[index]
            projected.append(F.normalize(head(flat[:, ids, :]), dim=-1))
            used.append(ids)
        return projected, used


def patch_nce_loss(query: torch.Tensor, key: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """InfoNCE over patches of the same image.

    Args:
        query: ``(B, P, F)`` unit-norm output-patch features.
        key: ``(B, P, F)`` unit-norm input-patch features at the same locations (detached here).
        temperature: τ.

    Returns:
        The mean loss over the ``B·P`` queries (a scalar).
    """
    key = key.detach()
    batch, patches, _ = query.shape
    positive = (query * key).sum(-1, keepdim=True)  # (B, P, 1)
    negative = torch.bmm(query, key.transpose(1, 2))  # (B, P, P): same image only
    diagonal = torch.eye(patches, dtype=torch.bool, device=query.device)[None]
    negative = negative.masked_fill(diagonal, float("-inf"))  # the positive is not its own negative
    logits = torch.cat([positive, negative], dim=-1) / temperature
    target = torch.zeros(batch * patches, dtype=torch.long, device=query.device)
    return F.cross_entropy(logits.flatten(0, 1), target)
