"""The ``register`` configuration section (paper step 1)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from diff4mmlits.settings import Section

RegistrationMethod = Literal["none", "rigid", "affine", "bspline", "elastix", "convexadam"]
"""``none`` only resamples onto the annotated grid; ``rigid`` / ``affine`` / ``bspline``: where the
SimpleITK chain rigid → affine → B-spline stops; ``elastix``: elastix's rigid → affine → B-spline
with a bending-energy penalty (optional ``itk-elastix``); ``convexadam``: the SimpleITK chain to
affine, then ConvexAdam's MIND-SSC deformable step (optional ``convexadam``)."""


class RegisterConfig(Section):
    """Paper step 1: rough, liver-focused registration of every phase onto the annotated phase.

    Each stage of the chain (rigid → affine → B-spline, cut at ``method``) runs SimpleITK's
    ``ImageRegistrationMethod`` with Mattes mutual information over the liver region of interest,
    multi-resolution over ``shrink_factors`` / ``smoothing_sigmas_mm`` (one entry per level).
    """

    method: RegistrationMethod = "bspline"
    """How far the chain goes; ``none`` only resamples every phase onto the annotated grid."""
    margin_mm: float = Field(20.0, ge=0)
    """The region of interest is the annotated liver (label > 0) dilated by this margin, mm."""
    working_spacing_mm: float = Field(default=2.0, ge=0.0)
    """Registration runs on the phases shrunk (block means) to voxels about this wide, mm; coarser
    scans are used as they are; 0 keeps every scan's own voxels. The transforms are in world
    coordinates and apply to the full-resolution phases unchanged."""
    shrink_factors: tuple[int, ...] = (4, 2, 1)
    """Multi-resolution levels, coarse to fine: shrink factor of each level (voxels)."""
    smoothing_sigmas_mm: tuple[float, ...] = (4.0, 2.0, 0.0)
    """Gaussian smoothing of each level, mm (same length as ``shrink_factors``)."""
    rigid_iterations: int = Field(200, ge=0)
    """Optimizer iterations per level of the rigid stage."""
    affine_iterations: int = Field(200, ge=0)
    """Optimizer iterations per level of the affine stage."""
    bspline_iterations: int = Field(100, ge=0)
    """Optimizer iterations per level of the B-spline stage."""
    bspline_grid_mm: float = Field(60.0, gt=0)
    """Control-point spacing of the coarse B-spline grid, mm (over the annotated phase's extent)."""
    bspline_shrink_factors: tuple[int, ...] = (2,)
    """Levels of the B-spline stage (it starts from the affine result, so coarse levels suffice)."""
    bspline_smoothing_sigmas_mm: tuple[float, ...] = (2.0,)
    """Smoothing of each B-spline level, mm: keeps the deformation from fitting the noise."""
    bspline_max_displacement_mm: float = 3.0
    """Bound on each control point's displacement beyond the affine result, mm (the residual is small)."""
    histogram_bins: int = Field(32, ge=2)
    """Bins of the Mattes mutual information histogram."""
    sampling_percentage: float = Field(0.25, gt=0, le=1)
    """Share of the region-of-interest voxels sampled by the metric (random, fixed seed)."""
    sampling_min_points: int = 5000
    """At least this many metric samples per level (coarse levels of small images sample more)."""
    sampling_max_points: int = 5000
    """At most this many metric samples per level (large images sample a smaller share). 5000 rather
    than 20 000: on 256 × 256 phantom cases the same TRE (default site 0.88 vs 0.90 mm, third site
    1.04 vs 1.07 mm) in 56–73 % of the CPU time; on 64³ cases no change (docs/register.md)."""
    sampling_seed: int = 0
    """Seed of the metric's random sampling: the same seed gives the same transforms."""
    threads: int = Field(default=1, ge=0)
    """SimpleITK threads per registration; 0 = SimpleITK's default (all cores; one inside a
    ``--workers`` process). 1 makes the transforms bit-reproducible:
    with more, ITK's metric sums the per-thread histograms in whatever order the threads finish,
    and the B-spline stage amplifies those last digits into different transforms. The stage runs
    cases in parallel processes instead (``--workers``)."""
    elastix_iterations: int = 250
    """elastix: optimizer iterations per resolution of each of its stages (adaptive stochastic gradient)."""
    elastix_resolutions: int = 3
    """elastix: pyramid levels of each stage."""
    elastix_samples: int = 3000
    """elastix: random metric samples per iteration (inside the region; fixed seed)."""
    elastix_grid_mm: float = 40.0
    """elastix: final B-spline control-point spacing, mm."""
    elastix_bending_weight: float = 0.05
    """elastix: weight of the bending-energy penalty against the Mattes MI (smooth, plausible fields)."""
    convexadam_spacing_mm: float = 3.0
    """ConvexAdam: isotropic working grid over the region's box, mm; the displacement field is kept there."""
    convexadam_grid_sp: int = 4
    """ConvexAdam: voxels per control point of the discrete (convex) search, on the working grid."""
    convexadam_disp_hw: int = 3
    """ConvexAdam: search half-width in control-point steps (capture range grid_sp · disp_hw voxels)."""
    convexadam_lambda: float = 1.25
    """ConvexAdam: diffusion regularisation weight of the Adam instance optimisation."""
    convexadam_iterations: int = 60
    """ConvexAdam: Adam iterations (at least 1)."""
    convexadam_smooth_vox: int = 0
    """ConvexAdam: box smoothing of the final field, voxels of the working grid (odd; 0: none)."""
    convexadam_presmooth_mm: float = 0.0
    """ConvexAdam: Gaussian smoothing of both images before the features, mm (noise; 0: none)."""
    intensity_window_hu: tuple[float, float] = (-200.0, 300.0)
    """Intensities are clipped to this window before the metric sees them (soft tissue), HU."""
    divergence_tolerance: float = 0.0
    """A stage whose metric in the region ends worse than its start by more than this falls back."""
    fill_hu: float = -1024.0
    """Value of resampled voxels outside a phase's field of view, HU."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {
            "shrink_factors": (2, 1), "smoothing_sigmas_mm": (2.0, 0.0), "rigid_iterations": 40,
            "affine_iterations": 20, "bspline_iterations": 10, "sampling_percentage": 0.3,
            "elastix_iterations": 60, "elastix_resolutions": 2, "elastix_samples": 1500, "convexadam_iterations": 20,
        },
        "demo": {
            "rigid_iterations": 100, "affine_iterations": 50, "bspline_iterations": 15, "sampling_percentage": 0.2,
            "bspline_max_displacement_mm": 2.0, "elastix_iterations": 150,
        },
        "paper": {},
    }

    @model_validator(mode="after")
    def _check_levels(self) -> RegisterConfig:
        if len(self.shrink_factors) != len(self.smoothing_sigmas_mm) or not self.shrink_factors:
            raise ValueError("shrink_factors and smoothing_sigmas_mm need one entry per level, as many of each")
        if any(f < 1 for f in self.shrink_factors):
            raise ValueError("shrink factors must be at least 1")
        if not 0.0 < self.sampling_percentage <= 1.0:
            raise ValueError("sampling_percentage must lie in (0, 1]")
        if not 0 < self.sampling_min_points <= self.sampling_max_points:
            raise ValueError("sampling_min_points must be > 0 and at most sampling_max_points")
        if self.margin_mm < 0 or self.bspline_grid_mm <= 0:
            raise ValueError("margin_mm must be ≥ 0 and bspline_grid_mm > 0")
        if len(self.bspline_shrink_factors) != len(self.bspline_smoothing_sigmas_mm) or not self.bspline_shrink_factors:
            raise ValueError("bspline_shrink_factors and bspline_smoothing_sigmas_mm need one entry per level, as many of each")
        if self.convexadam_iterations < 1 or self.convexadam_smooth_vox < 0 or self.convexadam_spacing_mm <= 0:
            raise ValueError("convexadam_iterations must be ≥ 1, convexadam_smooth_vox ≥ 0 and convexadam_spacing_mm > 0")
        if self.bspline_max_displacement_mm <= 0:
            raise ValueError("bspline_max_displacement_mm must be > 0")
        return self
