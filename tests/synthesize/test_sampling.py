import pytest
import torch

from diff4mmlits.synthesize.diffusion import build_scheduler
from diff4mmlits.synthesize.sampling import denoise

SCHEDULE = {"num_train_timesteps": 100, "schedule": "scaled_linear_beta", "beta_start": 0.0015, "beta_end": 0.0195}


class Oracle(torch.nn.Module):
    """Predicts the noise exactly, knowing the clean latent: ε = (z_t − √ᾱ_t z0) / √(1 − ᾱ_t)."""

    def __init__(self, target: torch.Tensor, alphas_cumprod: torch.Tensor) -> None:
        super().__init__()
        self.target, self.alphas_cumprod = target, alphas_cumprod
        self.seen_conditions: list[torch.Tensor] = []

    def forward(self, x, timesteps, class_labels=None):
        channels = self.target.shape[1]
        latent, condition = x[:, :channels], x[:, channels:]
        self.seen_conditions.append(condition)
        alpha = self.alphas_cumprod[timesteps].view(-1, 1, 1, 1, 1)
        return (latent - alpha.sqrt() * self.target) / (1 - alpha).sqrt()


@pytest.mark.parametrize("kind, steps", [("ddim", 5), ("ddim", 20), ("ddpm", 100)])
def test_the_loop_recovers_the_clean_latent_with_an_exact_denoiser(kind, steps):
    generator = torch.Generator().manual_seed(0)
    target = torch.randn((2, 3, 4, 4, 4), generator=generator)
    scheduler = build_scheduler(SCHEDULE, kind)
    oracle = Oracle(target, scheduler.alphas_cumprod)
    condition = torch.ones((2, 1, 4, 4, 4))
    noise = torch.randn(target.shape, generator=generator)
    result = denoise(oracle, scheduler, noise, condition, steps, generator=generator)
    assert torch.allclose(result, target, atol=1e-3)
    assert len(oracle.seen_conditions) == steps and all(torch.equal(c, condition) for c in oracle.seen_conditions)
