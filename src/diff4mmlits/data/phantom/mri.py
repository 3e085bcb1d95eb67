"""An MRI-like rendering of the phantom's anatomy, and unpaired CT / MRI sets with known truth.

The phantom draws every case from a tissue map (``PhantomTruth.tissues``, ids named by
``TISSUES``). Here the same tissue map is given T1-weighted, fat-suppressed, portal-venous
post-contrast signal (relative to liver parenchyma, from the usual appearance of gadolinium-enhanced
liver MRI: vessels and enhancing rims bright, fat suppressed, cortical bone and air dark, fluid
dark, HCC washed out, hemangioma filling in), then

1. a per-case jitter of each tissue's signal (contrast varies between patients),
2. partial-volume blur,
3. a smooth multiplicative bias field (receive-coil inhomogeneity),
4. Rician noise: the magnitude of a complex signal with Gaussian noise in both channels.

The mapping from CT is non-linear and not monotonic (fat is darker than muscle on CT but close to
it here; bone is bright on CT and dark here; spleen is brighter than liver on CT and darker here),
so the identity is a poor translation and the translators have something to learn.

:func:`make_unpaired_sets` gives a labelled CT set and an MRI set of *other* patients (unpaired,
as the translators need), plus the CT patients rendered as MRI: the paired truth, for evaluation
only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from diff4mmlits.data.case import Case
from diff4mmlits.data.native import write_case_folder
from diff4mmlits.data.volume import Volume
from diff4mmlits.errors import InputError

log = logging.getLogger(__name__)

T1_POST_SIGNAL: dict[str, float] = {
    "air": 0.0, "gas": 0.0,
    "fat": 0.35, "muscle": 0.5,
    "bone_cortex": 0.05, "bone_marrow": 0.55, "spinal_canal": 0.15, "intervertebral_disc": 0.3,
    "liver": 1.0, "portal_branch": 1.55, "hepatic_vein": 1.45,
    "portal_vein": 1.65, "aorta": 1.6, "inferior_vena_cava": 1.5,
    "spleen": 0.82, "kidney_cortex": 1.35, "kidney_medulla": 1.05,
    "gallbladder": 0.2, "bowel_wall": 0.9, "bowel_content": 0.4,
    "hcc": 0.62, "hcc_capsule": 1.3, "metastasis": 0.5, "metastasis_rim": 1.1, "cyst": 0.1, "hemangioma": 1.5,
}
"""Relative T1-weighted post-contrast signal per phantom tissue (liver parenchyma = 1)."""

_KEYWORD_SIGNAL: tuple[tuple[str, float], ...] = (
    ("air", 0.0), ("gas", 0.0), ("fat", 0.35), ("bone", 0.3), ("vein", 1.5), ("aorta", 1.6), ("artery", 1.6),
    ("vessel", 1.5), ("kidney", 1.2), ("rim", 1.1), ("capsule", 1.3), ("cyst", 0.1), ("tumor", 0.6), ("liver", 1.0),
)


def relative_signal(name: str) -> float:
    """The T1 post-contrast signal of a tissue by name (a keyword rule for names not in the table)."""
    if name in T1_POST_SIGNAL:
        return T1_POST_SIGNAL[name]
    for keyword, value in _KEYWORD_SIGNAL:
        if keyword in name.lower():
            return value
    log.warning("phantom MRI: no T1 signal known for tissue %r; using soft tissue (0.7)", name)
    return 0.7


@dataclass(frozen=True)
class MRIRendering:
    """Settings of the MRI-like rendering (signal in arbitrary units, liver parenchyma ≈ ``liver_signal``)."""

    liver_signal: float = 400.0
    contrast_jitter: float = 0.06
    """Standard deviation of the per-case, per-tissue multiplicative signal jitter."""
    blur_vox: float = 0.7
    """Gaussian partial-volume blur, standard deviation in voxels (the image is as sharp as its grid allows)."""
    bias_amplitude: tuple[float, float] = (0.1, 0.3)
    """Range of the bias field's peak log-amplitude (a field of exp(±0.3) spans about ±35 %)."""
    noise_fraction: tuple[float, float] = (0.025, 0.05)
    """Range of the Rician noise σ, as a fraction of ``liver_signal``."""


def bias_field(shape: tuple[int, int, int], rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """A smooth multiplicative field ``exp(a · f)``, ``f`` a random low-order cosine series scaled to [-1, 1]."""
    grids = np.meshgrid(*[np.linspace(0.0, 1.0, n) for n in shape], indexing="ij")
    field = np.zeros(shape, dtype=np.float64)
    for _ in range(6):
        frequency = rng.uniform(0.2, 1.2, size=3)
        phase = rng.uniform(0, 2 * np.pi, size=3)
        term = np.ones(shape)
        for axis in range(3):
            term = term * np.cos(np.pi * frequency[axis] * grids[axis] + phase[axis])
        field += rng.normal() * term
    field /= max(float(np.abs(field).max()), 1e-6)
    return np.exp(amplitude * field).astype(np.float32)


def render_mri(
    tissues: np.ndarray,
    names: Mapping[int, str],
    rng: np.random.Generator,
    settings: MRIRendering = MRIRendering(),
) -> np.ndarray:
    """T1-weighted post-contrast-like image of a tissue map.

    Args:
        tissues: ``(Z, Y, X)`` integer tissue ids.
        names: tissue id → name (the phantom's ``TISSUES``).
        rng: draws the contrast jitter, bias field and noise.

    Returns:
        ``(Z, Y, X)`` float32 magnitude signal (arbitrary units, ≥ 0).
    """
    unknown = sorted(set(np.unique(tissues).tolist()) - set(names))
    if unknown:
        raise InputError(f"tissue ids {unknown[:5]} have no name; pass the phantom's TISSUES table")
    lookup = np.zeros(int(max(names)) + 1, dtype=np.float32)
    for tissue_id, name in sorted(names.items()):
        jitter = 1.0 + settings.contrast_jitter * rng.normal() if relative_signal(name) > 0 else 1.0
        lookup[tissue_id] = settings.liver_signal * relative_signal(name) * max(jitter, 0.5)
    clean = lookup[np.asarray(tissues, dtype=np.int64)]
    clean = ndimage.gaussian_filter(clean, settings.blur_vox) if settings.blur_vox > 0 else clean
    clean *= bias_field(clean.shape, rng, rng.uniform(*settings.bias_amplitude))
    sigma = rng.uniform(*settings.noise_fraction) * settings.liver_signal
    real = clean + rng.normal(0.0, sigma, clean.shape)
    imaginary = rng.normal(0.0, sigma, clean.shape)
    return np.sqrt(real ** 2 + imaginary ** 2).astype(np.float32)


# --- phantom cases as CT-only and MRI-only studies --------------------------------------------
def _tissue_map(truth: Any) -> tuple[np.ndarray, Mapping[int, str]]:
    """The tissue ids (on the annotated grid) and their names from a ``PhantomTruth``."""
    from diff4mmlits.data import phantom

    tissues = truth.tissues
    if isinstance(tissues, Mapping):  # one map per phase: the annotated phase's
        tissues = tissues["PVP"]
    array = tissues.array if isinstance(tissues, Volume) else np.asarray(tissues)
    names = getattr(truth, "tissue_names", None) or phantom.TISSUES
    return array, names


def mri_case_from_phantom(phantom_case: Any, rng: np.random.Generator, settings: MRIRendering = MRIRendering(),
                          phase: str = "PVP") -> Case:
    """The phantom patient as an MRI study: one image (stored as ``phase``) and the PVP label on its grid."""
    case = phantom_case.case
    tissues, names = _tissue_map(phantom_case.truth)
    grid = case.annotated
    if tissues.shape != grid.shape:
        raise ValueError(f"tissue map shape {tissues.shape} differs from the annotated grid {grid.shape}")
    image = grid.with_array(render_mri(tissues, names, rng, settings), kind="image")
    return Case(case_id=case.case_id, phases={phase: image}, label=case.label, annotated_phase=phase)


def ct_case_from_phantom(phantom_case: Any, phase: str = "PVP") -> Case:
    """The phantom patient as a single-phase CT study (the annotated phase and its label)."""
    case = phantom_case.case
    return Case(case_id=case.case_id, phases={phase: case.annotated}, label=case.label, annotated_phase=phase)


@dataclass(frozen=True)
class UnpairedSets:
    """A labelled CT set and an MRI set of other patients, plus the paired truth for evaluation.

    Attributes:
        ct: labelled CT studies (the source domain).
        mri: MRI studies of *other* patients, with their labels (target domain; the labels are
            for the fixed MRI segmenter and the downstream experiment, never for translation).
        ct_as_mri: the CT patients rendered as MRI on the CT grids: what a perfect translator
            would output (evaluation only).
    """

    ct: list[Case]
    mri: list[Case]
    ct_as_mri: list[Case]


def make_unpaired_sets(n_ct: int, n_mri: int, seed: int = 0, size: int = 64, site: str = "default",
                       settings: MRIRendering = MRIRendering()) -> UnpairedSets:
    """Phantom patients ``0..n_ct-1`` as CT and ``n_ct..n_ct+n_mri-1`` as MRI (disjoint patients)."""
    from diff4mmlits.data.phantom import make_phantom_case

    rng = np.random.default_rng([seed, 7])
    ct, truth, mri = [], [], []
    for index in range(n_ct + n_mri):
        phantom_case = make_phantom_case(index, seed=seed, site=site, size=size)
        if index < n_ct:
            ct.append(ct_case_from_phantom(phantom_case))
            truth.append(mri_case_from_phantom(phantom_case, rng, settings))
        else:
            mri.append(mri_case_from_phantom(phantom_case, rng, settings))
    return UnpairedSets(ct=ct, mri=mri, ct_as_mri=truth)


def write_mri_phantom_dataset(out: str | Path, cases: int, seed: int = 0, site: str = "default", size: int = 64,
                              first_index: int = 0) -> Path:
    """Write phantom patients ``first_index ..`` as MRI studies in the native layout (``<case>/PVP.nii.gz`` + label)."""
    from diff4mmlits.data.phantom import make_phantom_case

    out = Path(out)
    rng = np.random.default_rng([seed, 7, first_index])
    for index in range(first_index, first_index + cases):
        case = mri_case_from_phantom(make_phantom_case(index, seed=seed, site=site, size=size), rng)
        write_case_folder(case, out / case.case_id)
    return out
