"""Building blocks shared by CycleGAN, EssNet and CUT.

- :class:`ResnetGenerator`: the CycleGAN generator (Johnson et al. 2016, Zhu et al. 2017): a 7×7
  stem, two stride-2 convolutions, residual blocks, two transposed convolutions, a 7×7 head and
  ``tanh``; instance norm throughout; 2D (slice-wise, the default on CPU budgets) or 3D. MONAI has
  no such generator, so it is written here; :meth:`ResnetGenerator.encode` exposes the encoder
  features CUT's PatchNCE loss needs.
- :func:`build_discriminator`: MONAI's ``PatchDiscriminator`` (PatchGAN) with instance norm.
- :class:`LSGANLoss`: least-squares GAN loss (Mao et al. 2017) on the PatchGAN map, via MONAI's
  ``PatchAdversarialLoss``.
- :class:`ImagePool`: the history buffer of generated images that the discriminator sees
  (Shrivastava et al. 2017, as in CycleGAN).
- :func:`build_segmenter`: MONAI UNet for EssNet's segmentation constraint.

Shapes: images are ``(B, C, Y, X)`` in 2D and ``(B, C, Z, Y, X)`` in 3D, intensities in [-1, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.losses import PatchAdversarialLoss
from monai.networks.nets import PatchDiscriminator, UNet
from torch import nn

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_NORM = {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}
_PAD = {2: nn.ReflectionPad2d, 3: nn.ReflectionPad3d}


def _check_dims(spatial_dims: int) -> None:
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")


class ResnetBlock(nn.Module):
    """Two reflection-padded 3×3 convolutions with instance norm, plus the identity."""

    def __init__(self, channels: int, spatial_dims: int = 2) -> None:
        super().__init__()
        conv, norm, pad = _CONV[spatial_dims], _NORM[spatial_dims], _PAD[spatial_dims]
        self.body = nn.Sequential(
            pad(1), conv(channels, channels, 3, bias=True), norm(channels), nn.ReLU(inplace=True),
            pad(1), conv(channels, channels, 3, bias=True), norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """CycleGAN's ResNet generator with instance norm; input sizes must be multiples of ``2**n_down``.

    Encoder *taps* (what :meth:`encode` can return): tap 0 is the input itself, tap 1 the stem's
    output, taps ``2 .. 1 + n_down`` the downsampling stages, and tap ``1 + n_down + k`` the output
    of residual block ``k`` (counted from 1). CUT's default layers (0, 4, 8, 12, 16 of the
    reference implementation) correspond to taps (0, 2, 3, 6, 10) with 9 blocks.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        filters: int = 64,
        n_blocks: int = 9,
        n_down: int = 2,
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        _check_dims(spatial_dims)
        conv, conv_t, norm, pad = _CONV[spatial_dims], _CONV_T[spatial_dims], _NORM[spatial_dims], _PAD[spatial_dims]
        self.spatial_dims = spatial_dims
        self.n_down = n_down
        stages: list[nn.Module] = [nn.Sequential(pad(3), conv(in_channels, filters, 7), norm(filters), nn.ReLU(inplace=True))]
        channels = [in_channels, filters]
        width = filters
        for _ in range(n_down):
            stages.append(nn.Sequential(conv(width, width * 2, 3, stride=2, padding=1), norm(width * 2), nn.ReLU(inplace=True)))
            width *= 2
            channels.append(width)
        for _ in range(n_blocks):
            stages.append(ResnetBlock(width, spatial_dims))
            channels.append(width)
        self.encoder = nn.ModuleList(stages)
        self.tap_channels: tuple[int, ...] = tuple(channels)
        up: list[nn.Module] = []
        for _ in range(n_down):
            up += [conv_t(width, width // 2, 3, stride=2, padding=1, output_padding=1), norm(width // 2), nn.ReLU(inplace=True)]
            width //= 2
        up += [pad(3), conv(width, out_channels, 7), nn.Tanh()]
        self.decoder = nn.Sequential(*up)
        init_gan_weights(self)

    @property
    def size_multiple(self) -> int:
        """Spatial sizes must be multiples of this (``2**n_down``)."""
        return 2 ** self.n_down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, *S)`` in [-1, 1] → ``(B, C_out, *S)`` in [-1, 1]."""
        for stage in self.encoder:
            x = stage(x)
        return self.decoder(x)

    def encode(self, x: torch.Tensor, taps: Sequence[int]) -> list[torch.Tensor]:
        """Encoder features at ``taps`` (see the class docstring), in the order given."""
        wanted = set(taps)
        if wanted and max(wanted) >= len(self.tap_channels):
            raise ValueError(f"tap {max(wanted)} does not exist; this generator has taps 0..{len(self.tap_channels) - 1}")
        found: dict[int, torch.Tensor] = {0: x} if 0 in wanted else {}
        last = max(wanted, default=0)
        for index, stage in enumerate(self.encoder, start=1):
            if index > last:
                break
            x = stage(x)
            if index in wanted:
                found[index] = x
        return [found[t] for t in taps]


def init_gan_weights(module: nn.Module, gain: float = 0.02) -> None:
    """CycleGAN's init: convolution weights ~ N(0, gain), biases 0."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)):
            nn.init.normal_(layer.weight, 0.0, gain)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def build_discriminator(in_channels: int = 1, filters: int = 64, n_layers: int = 3, spatial_dims: int = 2) -> PatchDiscriminator:
    """PatchGAN discriminator (MONAI), instance norm, LeakyReLU 0.2; ``n_layers=3`` is the 70×70 PatchGAN.

    Its ``forward`` returns a list of features whose last item is the ``(B, 1, *S')`` patch map.
    """
    _check_dims(spatial_dims)
    return PatchDiscriminator(
        spatial_dims=spatial_dims, channels=filters, in_channels=in_channels, out_channels=1,
        num_layers_d=n_layers, norm="INSTANCE", bias=True,
    )


class LSGANLoss(nn.Module):
    """Least-squares GAN loss on a PatchGAN map: ``mean((D(x) - target)^2)``, target 1 real / 0 fake."""

    def __init__(self) -> None:
        super().__init__()
        self.loss = PatchAdversarialLoss(criterion="least_squares", no_activation_leastsq=True)

    def forward(self, prediction: torch.Tensor | list[torch.Tensor], target_is_real: bool) -> torch.Tensor:
        """``prediction``: the discriminator's output (a list: only the last item, the patch map, is used).

        The generator's loss is ``forward(D(fake), True)``; the discriminator's is the mean of
        ``forward(D(real), True)`` and ``forward(D(fake), False)``.
        """
        patch_map = prediction[-1] if isinstance(prediction, list) else prediction
        return self.loss(patch_map, target_is_real=target_is_real, for_discriminator=True)


class ImagePool:
    """A buffer of up to ``size`` generated images; the discriminator sees a mix of new and old ones.

    ``query`` returns, for each image of the batch, either the image itself or (with probability
    1/2, once the pool is full) a stored one, which the new image replaces. Random draws come from
    the ``torch.Generator`` passed in.
    """

    def __init__(self, size: int = 50) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``(B, C, *S)`` → ``(B, C, *S)`` (detached)."""
        if self.size == 0:
            return images.detach()
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand((), generator=generator).item() > 0.5:
                index = int(torch.randint(0, self.size, (), generator=generator).item())
                out.append(self.images[index].clone())
                self.images[index] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state(self) -> torch.Tensor:
        """The stored images as one ``(N, C, *S)`` CPU tensor (for resume); empty when unused."""
        return torch.cat(self.images, 0).cpu() if self.images else torch.zeros(0)

    def load_state(self, state: torch.Tensor, device: torch.device) -> None:
        self.images = [image.unsqueeze(0).to(device) for image in state] if state.numel() else []


def build_segmenter(in_channels: int, classes: int, channels: Sequence[int], spatial_dims: int = 2) -> UNet:
    """MONAI UNet (residual units, instance norm) for EssNet's segmentation constraint; logits out."""
    channels = tuple(int(c) for c in channels)
    return UNet(
        spatial_dims=spatial_dims, in_channels=in_channels, out_channels=classes, channels=channels,
        strides=(2,) * (len(channels) - 1), num_res_units=1, norm="INSTANCE",
    )
