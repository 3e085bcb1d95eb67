"""The Fast-Fourier-Convolution inpainting network (paper §III-A, after LaMa: Suvorov et al., WACV 2022).

Written here because no library ships it. The pieces, from the inside out:

- :class:`FourierUnit`: real FFT over the two spatial axes, a 1×1 convolution (+ BN + ReLU) on the
  stacked real and imaginary parts of every frequency, inverse FFT. Every output pixel depends on
  every input pixel: an image-wide receptive field in one layer.
- :class:`SpectralTransform`: 1×1 convolution to half the channels, a FourierUnit (optionally the
  "local" FourierUnit on the four quadrants as well), the sum with its input, 1×1 convolution out.
- :class:`FFC`: channels split into a local part (ordinary convolutions) and a global part
  (spectral transform); the four paths local→local, local→global, global→local, global→global are
  cross-fused: ``y_l = conv(x_l) + conv(x_g)``, ``y_g = conv(x_l) + spectral(x_g)``.
- :class:`FFC_BN_ACT`, :class:`FFCResnetBlock`: the FFC with batch norm and activation per branch,
  and two of them with a residual connection on both branches (global ratio 0.75).
- :class:`FFCInpainter`: strided FFC downsampling → FFC residual blocks → transposed-convolution
  upsampling, fully convolutional, run on 2D axial slices. By default it refines a smooth first
  guess of the hole (:mod:`~diff4mmlits.inpaint.coarse`) instead of drawing the hole from nothing.

Tensors are ``(B, C, Y, X)`` (one axial slice per batch item). The network sees intensities in the
window of :class:`~diff4mmlits.config.InpaintConfig` mapped to [-1, 1] and predicts the same.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from diff4mmlits import PHASES
from diff4mmlits.inpaint.coarse import coarse_fill

MODEL_KIND = "ffc-inpainter"
"""The ``kind`` in an inpainter model folder's ``config.json``."""

Branches = tuple[torch.Tensor | None, torch.Tensor | None]
"""(local, global) feature maps of an FFC layer; a branch with no channels is ``None``."""


class FourierUnit(nn.Module):
    """Spectral 1×1 convolution: ``irfft2(ReLU(BN(conv1x1([Re, Im](rfft2(x))))))``.

    Input ``(B, C_in, Y, X)`` → output ``(B, C_out, Y, X)``. The FFT runs in float32 even under
    autocast (half-precision FFTs are limited to power-of-two sizes and lose accuracy), with the
    orthonormal scaling so that magnitudes do not depend on the slice size.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2 * in_channels, 2 * out_channels, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(2 * out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        with torch.autocast(device_type=x.device.type, enabled=False):
            spectrum = torch.fft.rfft2(x.float(), norm="ortho")  # (B, C, Y, X//2+1), complex
            stacked = torch.cat([spectrum.real, spectrum.imag], dim=1)  # (B, 2C, Y, X//2+1)
            stacked = self.act(self.bn(self.conv(stacked.to(self.conv.weight.dtype))))
            real, imag = stacked.float().chunk(2, dim=1)
            out = torch.fft.irfft2(torch.complex(real, imag), s=size, norm="ortho")
        return out.to(x.dtype)


class SpectralTransform(nn.Module):
    """The global path of an FFC: ``conv1x1 → FourierUnit (+ local FourierUnit) → sum → conv1x1``.

    ``(B, C_in, Y, X)`` → ``(B, C_out, Y/stride, X/stride)``; stride 2 is an average pooling first.
    The local FourierUnit (LaMa's ``enable_lfu``) runs on the four quadrants of a quarter of the
    channels stacked together, which needs even sizes.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, enable_lfu: bool = False) -> None:
        super().__init__()
        hidden = max(1, out_channels // 2)
        self.downsample = nn.AvgPool2d(kernel_size=2, stride=2) if stride == 2 else nn.Identity()
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channels, hidden, kernel_size=1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True)
        )
        self.fu = FourierUnit(hidden, hidden)
        self.lfu = FourierUnit(hidden, hidden) if enable_lfu else None
        self.conv2 = nn.Conv2d(hidden, out_channels, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.downsample(x))
        out = x + self.fu(x)
        if self.lfu is not None:
            out = out + self._local_fourier(x)
        return self.conv2(out)

    def _local_fourier(self, x: torch.Tensor) -> torch.Tensor:
        """The quadrants of the first quarter of the channels, stacked as channels, through a FourierUnit, tiled back."""
        channels, height, width = x.shape[1:]
        if channels % 4 or height % 2 or width % 2:
            raise ValueError(f"the local Fourier unit needs channels divisible by 4 and even sizes, got {tuple(x.shape)}")
        quarter = x[:, : channels // 4]
        tiles = torch.cat(torch.split(quarter, height // 2, dim=-2), dim=1)
        tiles = torch.cat(torch.split(tiles, width // 2, dim=-1), dim=1)  # (B, C, Y/2, X/2)
        return self.lfu(tiles).repeat(1, 1, 2, 2)


def _split_channels(channels: int, ratio: float) -> tuple[int, int]:
    """(local, global) channel counts for a global ratio."""
    global_channels = int(channels * ratio)
    return channels - global_channels, global_channels


class FFC(nn.Module):
    """Fast Fourier Convolution: local and global branches, cross-fused.

    Input and output are ``(local, global)`` pairs of ``(B, C, Y, X)`` maps (``None`` for a branch
    with no channels). ``ratio_gin``/``ratio_gout`` give the share of global channels in and out.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        ratio_gin: float,
        ratio_gout: float,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        bias: bool = False,
        enable_lfu: bool = False,
        padding_mode: str = "reflect",
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"FFC stride must be 1 or 2, got {stride}")
        self.in_cl, self.in_cg = _split_channels(in_channels, ratio_gin)
        self.out_cl, self.out_cg = _split_channels(out_channels, ratio_gout)

        def conv(cin: int, cout: int) -> nn.Module | None:
            if cin == 0 or cout == 0:
                return None
            return nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, dilation=dilation, bias=bias,
                             padding_mode=padding_mode)

        self.convl2l = conv(self.in_cl, self.out_cl)
        self.convl2g = conv(self.in_cl, self.out_cg)
        self.convg2l = conv(self.in_cg, self.out_cl)
        self.convg2g = (SpectralTransform(self.in_cg, self.out_cg, stride, enable_lfu)
                        if self.in_cg > 0 and self.out_cg > 0 else None)

    def forward(self, x: Branches) -> Branches:
        x_l, x_g = x
        out_l = out_g = None
        if self.out_cl > 0:
            out_l = _add(_apply(self.convl2l, x_l), _apply(self.convg2l, x_g))
        if self.out_cg > 0:
            out_g = _add(_apply(self.convl2g, x_l), _apply(self.convg2g, x_g))
        return out_l, out_g


def _apply(module: nn.Module | None, x: torch.Tensor | None) -> torch.Tensor | None:
    return None if module is None or x is None else module(x)


def _add(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    if a is None:
        return b
    return a if b is None else a + b


class FFC_BN_ACT(nn.Module):  # noqa: N801  (LaMa's name, kept so the paper's reader finds it)
    """An :class:`FFC` followed by batch norm and an activation on each branch."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, ratio_gin: float, ratio_gout: float,
                 stride: int = 1, padding: int = 0, dilation: int = 1, enable_lfu: bool = False,
                 padding_mode: str = "reflect", activation: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.ffc = FFC(in_channels, out_channels, kernel_size, ratio_gin, ratio_gout, stride, padding, dilation,
                       enable_lfu=enable_lfu, padding_mode=padding_mode)
        self.bn_l = nn.BatchNorm2d(self.ffc.out_cl) if self.ffc.out_cl else nn.Identity()
        self.bn_g = nn.BatchNorm2d(self.ffc.out_cg) if self.ffc.out_cg else nn.Identity()
        self.act_l = activation(inplace=True) if self.ffc.out_cl else nn.Identity()
        self.act_g = activation(inplace=True) if self.ffc.out_cg else nn.Identity()

    def forward(self, x: Branches | torch.Tensor) -> Branches:
        if isinstance(x, torch.Tensor):
            x = (x, None) if self.ffc.in_cg == 0 else _split(x, self.ffc.in_cl)
        x_l, x_g = self.ffc(x)
        x_l = None if x_l is None else self.act_l(self.bn_l(x_l))
        x_g = None if x_g is None else self.act_g(self.bn_g(x_g))
        return x_l, x_g


def _split(x: torch.Tensor, local_channels: int) -> Branches:
    return x[:, :local_channels], x[:, local_channels:]


class FFCResnetBlock(nn.Module):
    """Two 3×3 :class:`FFC_BN_ACT` layers with a residual connection on the local and global branches."""

    def __init__(self, channels: int, ratio: float = 0.75, dilation: int = 1, enable_lfu: bool = False) -> None:
        super().__init__()
        self.conv1 = FFC_BN_ACT(channels, channels, 3, ratio, ratio, padding=dilation, dilation=dilation, enable_lfu=enable_lfu)
        self.conv2 = FFC_BN_ACT(channels, channels, 3, ratio, ratio, padding=dilation, dilation=dilation, enable_lfu=enable_lfu)

    def forward(self, x: Branches) -> Branches:
        x_l, x_g = self.conv2(self.conv1(x))
        return _add(x[0], x_l), _add(x[1], x_g)


@dataclass(frozen=True)
class InpainterArchitecture:
    """What builds an :class:`FFCInpainter` (saved as the model folder's ``config.json``)."""

    base_channels: int = 64
    """LaMa's ``ngf``: channels after the first 7×7 layer; doubled at each downsampling."""
    max_channels: int = 512
    n_downsampling: int = 3
    n_blocks: int = 9
    ratio_global: float = 0.75
    """Share of global (spectral) channels in the residual blocks."""
    enable_lfu: bool = False
    phases: tuple[str, ...] = PHASES
    """Phases the model knows, in one-hot order."""
    coarse_residual: bool = True
    """Refine a coarse fill (extra input channel; output = coarse + correction) instead of LaMa's plain output."""
    coarse_iterations: int = 64
    """Harmonic sweeps of the coarse fill."""
    context_slices: int = 0
    """2.5D: the axial slices on each side of the one being filled, given as extra inputs (each masked
    by its own hole, with that hole); 0 = the paper's single slice."""

    def to_dict(self) -> dict:
        return {**asdict(self), "phases": list(self.phases)}

    @classmethod
    def from_dict(cls, values: dict) -> InpainterArchitecture:
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        if "phases" in known:
            known["phases"] = tuple(known["phases"])
        return cls(**known)


class FFCInpainter(nn.Module):
    """LaMa's FFC ResNet generator for one CT phase slice, with the phase as input.

    One model serves all four phases, told which phase it sees by four one-hot input planes. Why
    one shared model rather than one per phase: the phases share anatomy and noise and differ mainly
    in the liver's and the vessels' enhancement, which a one-hot input shifts cheaply; a shared model
    sees four times the slices (the training sets here are ~10–40 cases, where data, not capacity,
    limits a GAN), a phase missing from some cases costs nothing, and there is one model to train,
    resume and ship. The phase input still lets it produce phase-specific liver texture.

    ``forward(image, mask, phase_index)``: ``image`` ``(B, 1, Y, X)`` in [-1, 1], ``mask``
    ``(B, 1, Y, X)`` with 1 in the hole, ``phase_index`` ``(B,)`` indices into
    ``architecture.phases``; a 2.5D model (``context_slices`` = k > 0, issue 14) also takes
    ``context`` and ``context_mask`` ``(B, 2k, Y, X)``: the k slices below and above, in order, and
    their holes (a tumor spans several slices, so the neighbours are masked too; what they show
    around the hole is what a single slice lacks). It sees ``stack(image·(1−m), m, one_hot(phase))`` (paper: ``x' =
    stack(x ⊙ m, m)``) and returns the raw prediction ``(B, 1, Y, X)``; :func:`composite` keeps the
    known pixels. Any slice size works: inputs are reflect-padded to a multiple of 2^n_downsampling.

    With ``coarse_residual`` (the default) the input also holds a smooth first guess ``c`` of the
    hole (push-pull + harmonic interpolation of its rim) and the output is ``c + f(x')``, the last
    layer starting at zero. Why: the paper fine-tunes LaMa's pre-trained weights, which we cannot
    download; trained from scratch, LaMa's plain output needs far more steps than a CPU budget
    allows before it even matches a median filter (in our phantom runs it was still filling holes
    with one grey level after 300 steps), while the residual form starts at the smooth
    interpolation and spends its training on what interpolation cannot do (texture, vessels, edges).
    ``coarse_residual=False`` gives LaMa's generator unchanged (``tanh`` output).
    """

    def __init__(self, architecture: InpainterArchitecture = InpainterArchitecture()) -> None:
        super().__init__()
        self.architecture = architecture
        arch = architecture
        in_channels = 2 + len(arch.phases) + int(arch.coarse_residual) + 4 * arch.context_slices

        def width(level: int) -> int:
            return min(arch.max_channels, arch.base_channels * 2 ** level)

        self.stem_pad = nn.ReflectionPad2d(3)
        self.stem = FFC_BN_ACT(in_channels, arch.base_channels, 7, 0.0, 0.0)
        down = []
        for level in range(arch.n_downsampling):
            last = level == arch.n_downsampling - 1
            down.append(FFC_BN_ACT(width(level), width(level + 1), 3, ratio_gin=0.0,
                                   ratio_gout=arch.ratio_global if last else 0.0, stride=2, padding=1))
        self.down = nn.ModuleList(down)
        bottleneck = width(arch.n_downsampling)
        self.blocks = nn.ModuleList(
            FFCResnetBlock(bottleneck, arch.ratio_global, enable_lfu=arch.enable_lfu) for _ in range(arch.n_blocks)
        )
        up: list[nn.Module] = []
        for level in range(arch.n_downsampling, 0, -1):
            up += [nn.ConvTranspose2d(width(level), width(level - 1), 3, stride=2, padding=1, output_padding=1),
                   nn.BatchNorm2d(width(level - 1)), nn.ReLU(inplace=True)]
        self.up = nn.Sequential(*up)
        out_conv = nn.Conv2d(arch.base_channels, 1, kernel_size=7)
        if arch.coarse_residual:  # start as the coarse fill itself
            nn.init.zeros_(out_conv.weight)
            nn.init.zeros_(out_conv.bias)
        self.head = nn.Sequential(nn.ReflectionPad2d(3), out_conv, nn.Identity() if arch.coarse_residual else nn.Tanh())

    @property
    def multiple(self) -> int:
        """Slice sizes the core network takes without padding (the local Fourier unit halves the bottleneck once more)."""
        return 2 ** (self.architecture.n_downsampling + int(self.architecture.enable_lfu))

    def network_input(self, image: torch.Tensor, mask: torch.Tensor, phase_index: torch.Tensor,
                      coarse: torch.Tensor | None = None, context: torch.Tensor | None = None,
                      context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, C, Y, X)``: masked image, (coarse fill,) mask, phase one-hot planes, (masked neighbour
        slices and their masks)."""
        one_hot = F.one_hot(phase_index.long(), len(self.architecture.phases)).to(image.dtype)
        planes = one_hot[:, :, None, None].expand(-1, -1, *image.shape[-2:])
        extra = [coarse] if coarse is not None else []
        neighbours = []
        if self.architecture.context_slices:
            expected = 2 * self.architecture.context_slices
            if context is None or context_mask is None or context.shape[1] != expected:
                raise ValueError(f"this 2.5D inpainter needs {expected} neighbour slices and their masks")
            neighbours = [context * (1 - context_mask), context_mask]
        return torch.cat([image * (1 - mask), *extra, mask, planes, *neighbours], dim=1)

    def forward(self, image: torch.Tensor, mask: torch.Tensor, phase_index: torch.Tensor,
                context: torch.Tensor | None = None, context_mask: torch.Tensor | None = None) -> torch.Tensor:
        coarse = None
        if self.architecture.coarse_residual:
            hidden = torch.where(mask > 0.5, torch.zeros_like(image), image)  # the fill never sees the hole
            coarse = coarse_fill(hidden, mask, self.architecture.coarse_iterations)
        x = self.network_input(image, mask, phase_index, coarse, context, context_mask)
        height, width = x.shape[-2:]
        pad_y, pad_x = (-height) % self.multiple, (-width) % self.multiple
        if pad_y or pad_x:
            mode = "reflect" if pad_y < height and pad_x < width else "replicate"
            x = F.pad(x, (0, pad_x, 0, pad_y), mode=mode)
        features: Branches = self.stem(self.stem_pad(x))
        for layer in self.down:
            features = layer(features)
        for block in self.blocks:
            features = block(features)
        merged = torch.cat([f for f in features if f is not None], dim=1)
        out = self.head(self.up(merged))[..., :height, :width]
        return out if coarse is None else coarse + out


def composite(prediction: torch.Tensor, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``m·pred + (1−m)·image`` for a binary mask, written as a select so that known pixels stay bit-for-bit."""
    return torch.where(mask > 0.5, prediction, image)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
