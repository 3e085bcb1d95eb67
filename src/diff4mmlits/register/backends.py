"""The registration backends behind one interface (paper step 1), read by the stage and the CLI.

Every backend takes the annotated phase (fixed), one phase (moving), the region of interest and
the ``register`` section, and returns a :class:`~diff4mmlits.register.phase.PhaseRegistration`
(ITK's convention: fixed → moving points, mm). ``register.method`` picks one:

============  ==================================================================  ============
method        what runs                                                           needs
============  ==================================================================  ============
none          nothing: every phase only resampled onto the annotated grid        —
rigid         SimpleITK chain: rigid                                              —
affine        SimpleITK chain: rigid → affine                                     —
bspline       SimpleITK chain: rigid → affine → coarse B-spline (default)         —
elastix       elastix: rigid → affine → B-spline + bending-energy penalty         itk-elastix
convexadam    SimpleITK chain to affine, then ConvexAdam (MIND-SSC, dense field)  convexadam
============  ==================================================================  ============
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import SimpleITK as sitk

from diff4mmlits.register.config import RegisterConfig
from diff4mmlits.register.method import register_phase_chain
from diff4mmlits.register.phase import PhaseRegistration, itk_threads


@dataclass(frozen=True)
class Backend:
    """Where a method's ``register_phase`` lives and what it needs installed."""

    module: str
    function: str
    requires: str = ""
    """The function that raises the one-line :class:`InputError` when the dependency is missing."""


BACKENDS: dict[str, Backend] = {
    **{name: Backend("diff4mmlits.register.method", "register_phase_chain") for name in ("none", "rigid", "affine", "bspline")},
    "elastix": Backend("diff4mmlits.register.elastix", "register_phase_elastix", "require_elastix"),
    "convexadam": Backend("diff4mmlits.register.convexadam", "register_phase_convexadam", "require_convexadam"),
}


def require_backend(method: str) -> None:
    """Raise :class:`InputError` (one line: what to install) when ``method``'s optional dependency is absent."""
    backend = BACKENDS[method]
    if backend.requires:
        getattr(importlib.import_module(backend.module), backend.requires)()


def register_phase(fixed: sitk.Image, moving: sitk.Image, roi: sitk.Image, config: RegisterConfig,
                   label: str = "phase") -> PhaseRegistration:
    """Register ``moving`` onto ``fixed`` inside ``roi`` with the backend ``config.method`` names.

    Args:
        fixed: the annotated phase on its own grid, HU.
        moving: the phase to align, HU, on its own grid.
        roi: uint8 mask on ``fixed``'s grid (the liver region of interest).
        config: the ``register`` section.
        label: a name for log lines (``case_03/AP``).
    """
    backend = BACKENDS[config.method]
    if backend.function == "register_phase_chain":
        return register_phase_chain(fixed, moving, roi, config, label)
    function = getattr(importlib.import_module(backend.module), backend.function)
    with itk_threads(config.threads):
        return function(fixed, moving, roi, config, label)
