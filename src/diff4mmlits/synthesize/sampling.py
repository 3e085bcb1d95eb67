"""The reverse diffusion loop (paper Eq. 2), written out: the scheduler owns ``set_timesteps`` and
``step``, the network owns ``forward``, and this loop is all there is between them.

``p(z_0) = p(z_T) ∏ p(z_{t−1} | z_t, y)``: start from ``z_T`` (given, so that callers decide
which phases share the noise), and at each of the scheduler's timesteps predict ε from
``[z_t, condition]`` and let the scheduler step. DDIM with few steps for synthesis; DDPM with all
``T`` steps for comparison (the benchmark times both).

``strength`` < 1 starts part-way (SDEdit): at the first timestep ≤ strength·T, from the latent of
the masked CT noised to that level, instead of from pure noise at T.
"""

from __future__ import annotations

import torch
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler


def reverse_timesteps(scheduler: DDIMScheduler | DDPMScheduler, num_steps: int, strength: float = 1.0,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """The scheduler's ``num_steps`` timesteps (descending), keeping those ≤ ``strength``·T."""
    scheduler.set_timesteps(num_steps, device=device)
    timesteps = scheduler.timesteps
    if strength < 1.0:
        timesteps = timesteps[timesteps <= strength * scheduler.num_train_timesteps]
    return timesteps


def start_latent(scheduler: DDIMScheduler | DDPMScheduler, noise: torch.Tensor, known: torch.Tensor,
                 timesteps: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """``z`` at the first timestep: ``noise`` itself (strength 1), else ``known`` noised with ``noise`` to that level."""
    if strength >= 1.0:
        return noise
    level = torch.full((noise.shape[0],), int(timesteps[0]), device=noise.device, dtype=torch.long)
    return scheduler.add_noise(original_samples=known, noise=noise, timesteps=level)


@torch.no_grad()
def denoise(
    network: torch.nn.Module,
    scheduler: DDIMScheduler | DDPMScheduler,
    start: torch.Tensor,
    condition: torch.Tensor,
    timesteps: torch.Tensor,
    generator: torch.Generator | None = None,
    class_labels: torch.Tensor | None = None,
    eta: float = 0.0,
) -> torch.Tensor:
    """Run the reverse process over ``timesteps`` from ``start`` to a clean latent.

    Args:
        network: ε-predicting ``DiffusionModelUNet``; input ``[z_t, condition]`` along channels.
        scheduler: MONAI ``DDIMScheduler`` or ``DDPMScheduler`` whose ``set_timesteps`` gave ``timesteps``
            (see :func:`reverse_timesteps`).
        start: ``z`` at ``timesteps[0]``, ``(B, C, z, y, x)`` (see :func:`start_latent`).
        condition: ``(B, K, z, y, x)``, concatenated to ``z_t`` at every step.
        timesteps: descending timesteps to visit.
        generator: randomness of stochastic steps (DDPM, or DDIM with ``eta`` > 0).
        class_labels: ``(B,)`` phase indices for a class-conditioned network (paper mode).
        eta: DDIM stochasticity (0 = deterministic).

    Returns:
        ``z_0``, ``(B, C, z, y, x)``.
    """
    latent = start
    for t in timesteps:
        level = torch.full((latent.shape[0],), int(t), device=latent.device, dtype=torch.long)
        epsilon = network(torch.cat([latent, condition], dim=1), timesteps=level, class_labels=class_labels)
        if isinstance(scheduler, DDIMScheduler):
            latent, _ = scheduler.step(epsilon, int(t), latent, eta=eta, generator=generator)
        else:
            latent, _ = scheduler.step(epsilon, int(t), latent, generator=generator)
    return latent
