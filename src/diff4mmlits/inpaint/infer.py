"""Running a trained FFC inpainter over volumes: slice by slice, batched (paper: "slice-by-slice inpainting");
a 2.5D model also sees the neighbour slices of the input, each masked by its own hole.

Only the axial slices that hold part of the mask go through the network; the composite is done in
HU, so every voxel outside the mask keeps its value bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from diff4mmlits.checkpoint import WEIGHTS_NAME, load_weights, model_config_errors, read_model_config
from diff4mmlits.data.intensity import window_map
from diff4mmlits.distributed import resolve_device
from diff4mmlits.errors import InputError
from diff4mmlits.inpaint.network import MODEL_KIND, FFCInpainter, InpainterArchitecture
from diff4mmlits.inpaint.slices import neighbour_indices
from diff4mmlits.training import autocast


@dataclass
class Inpainter:
    """A trained generator with what it needs to fill volumes: its HU window, device and batch size."""

    network: FFCInpainter
    window_hu: tuple[float, float]
    device: torch.device
    batch_size: int = 32

    @classmethod
    def load(cls, folder: str | Path, device: str = "auto", batch_size: int = 32) -> Inpainter:
        """Load ``config.json`` + ``weights.safetensors`` of a model folder (``RUN/models/inpainter``)."""
        folder = Path(folder)
        saved = read_model_config(folder, kind=MODEL_KIND)
        with model_config_errors(folder):
            network = FFCInpainter(InpainterArchitecture.from_dict(saved["architecture"]))
            window_hu = tuple(float(v) for v in saved["window_hu"])
        load_weights(network, folder / WEIGHTS_NAME)
        resolved = resolve_device(device)
        return cls(network.to(resolved).eval(), window_hu, resolved, batch_size)  # type: ignore[arg-type]

    @property
    def phases(self) -> tuple[str, ...]:
        return self.network.architecture.phases

    def fill(self, image: np.ndarray, hole: np.ndarray, phase: str) -> np.ndarray:
        """Inpaint ``hole`` in a ``(Z, Y, X)`` HU volume of ``phase``; float32 HU, unchanged outside the hole."""
        if image.shape != hole.shape or image.ndim != 3:
            raise InputError(f"image {image.shape} and mask {hole.shape} must be the same 3D (z, y, x) shape")
        if phase not in self.phases:
            raise InputError(f"phase {phase!r} is not one the inpainter knows ({', '.join(self.phases)})")
        out = np.asarray(image, dtype=np.float32).copy()
        hole = np.asarray(hole, dtype=bool)
        slices = np.flatnonzero(hole.any(axis=(1, 2)))
        phase_index = self.phases.index(phase)
        self.network.eval()
        window = window_map(self.window_hu)  # HU ↔ [-1, 1], the result clipped
        k = self.network.architecture.context_slices
        source = window.to_unit(np.asarray(image, dtype=np.float32))  # neighbours come from the input, not from filled slices
        with torch.inference_mode(), autocast(self.device, dtype=torch.float16):
            for start in range(0, len(slices), self.batch_size):
                chosen = slices[start:start + self.batch_size]
                unit = torch.from_numpy(source[chosen][:, None]).to(self.device)
                mask = torch.from_numpy(hole[chosen][:, None].astype(np.float32)).to(self.device)
                phases = torch.full((len(chosen),), phase_index, dtype=torch.long, device=self.device)
                context = context_mask = None
                if k:
                    near = np.array([neighbour_indices(int(z), len(source), k) for z in chosen])
                    context = torch.from_numpy(source[near]).to(self.device)
                    context_mask = torch.from_numpy(hole[near].astype(np.float32)).to(self.device)
                prediction = self.network(unit, mask, phases, context, context_mask).float().cpu().numpy()[:, 0]
                predicted_hu = window.from_unit(prediction)
                block = out[chosen]
                block[hole[chosen]] = predicted_hu[hole[chosen]]
                out[chosen] = block
        return out
