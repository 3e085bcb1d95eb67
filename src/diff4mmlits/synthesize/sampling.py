"""The reverse diffusion loop (paper Eq. 2), written out: the scheduler owns ``set_timesteps`` and
``step``, the network owns ``forward``, and this loop is all there is between them.

``p(z_0) = p(z_T) ∏ p(z_{t−1} | z_t, y)``: start from noise ``z_T`` (given, so that callers
decide which phases share it), and at each of the scheduler's timesteps predict ε from
``[z_t, condition]`` and let the scheduler step. DDIM with few steps for synthesis; DDPM with all
``T`` steps for comparison (the benchmark times both).
"""

from __future__ import annotations

import torch
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler


@torch.no_grad()
def denoise(
    network: torch.nn.Module,
    scheduler: DDIMScheduler | DDPMScheduler,
    noise: torch.Tensor,
    condition: torch.Tensor,
    num_steps: int,
    generator: torch.Generator | None = None,
    class_labels: torch.Tensor | None = None,
    eta: float = 0.0,
) -> torch.Tensor:
    """Run the reverse process from ``noise`` to a clean latent.

    Args:
        network: ε-predicting ``DiffusionModelUNet``; input ``[z_t, condition]`` along channels.
        scheduler: MONAI ``DDIMScheduler`` (``num_steps`` ≤ T) or ``DDPMScheduler`` (``num_steps`` = T).
        noise: ``z_T``, ``(B, C, z, y, x)``.
        condition: ``(B, K, z, y, x)``, concatenated to ``z_t`` at every step.
        num_steps: number of reverse steps.
        generator: randomness of stochastic steps (DDPM, or DDIM with ``eta`` > 0).
        class_labels: ``(B,)`` phase indices for a class-conditioned network (paper mode).
        eta: DDIM stochasticity (0 = deterministic).

    Returns:
        ``z_0``, ``(B, C, z, y, x)``.
    """
    scheduler.set_timesteps(num_steps, device=noise.device)
    latent = noise
    for t in scheduler.timesteps:
        timesteps = torch.full((latent.shape[0],), int(t), device=latent.device, dtype=torch.long)
        epsilon = network(torch.cat([latent, condition], dim=1), timesteps=timesteps, class_labels=class_labels)
        if isinstance(scheduler, DDIMScheduler):
            latent, _ = scheduler.step(epsilon, int(t), latent, eta=eta, generator=generator)
        else:
            latent, _ = scheduler.step(epsilon, int(t), latent, generator=generator)
    return latent
