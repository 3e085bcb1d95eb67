"""The built-in phantom: deterministic four-phase abdominal CT with ground truth for every phase.

A patient (body, spine, muscles, aorta, IVC, portal vein and a hepatic vessel tree, spleen,
kidneys, gallbladder, bowel and a lobed liver) with 1–4 liver tumors (HCC, metastasis, cyst,
hemangioma), drawn in the four contrast phases with breathing between them. Unlike real data it
comes with the label of every phase, the tumor-free images and the true misalignment.

Modules: :mod:`.anatomy` (shapes, :data:`TISSUES`), :mod:`.enhancement` (HU per tissue and phase,
contrast timing), :mod:`.tumors`, :mod:`.breathing` (displacement fields), :mod:`.acquisition`
(grids, blur, noise, sites), :mod:`.generate` (one case), :mod:`.writer` (the dataset on disk),
:mod:`.mri` (the same anatomy as an MRI-like study, for the translators).
"""

from diff4mmlits.data.phantom.acquisition import SITES
from diff4mmlits.data.phantom.anatomy import TISSUES
from diff4mmlits.data.phantom.generate import PhantomCase, PhantomTruth, make_phantom_case, noise_free_phases
from diff4mmlits.data.phantom.writer import TRUTH_FOLDER, read_phantom_truth, write_phantom_case, write_phantom_dataset

__all__ = [
    "SITES",
    "TISSUES",
    "TRUTH_FOLDER",
    "PhantomCase",
    "PhantomTruth",
    "make_phantom_case",
    "noise_free_phases",
    "read_phantom_truth",
    "write_phantom_case",
    "write_phantom_dataset",
]
