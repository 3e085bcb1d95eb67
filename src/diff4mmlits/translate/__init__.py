"""Unpaired cross-modality translation: CycleGAN, EssNet (CycleGAN + segmentation) and CUT.

The second seed method of diff4mmlits (Rafiq et al. 2025, ``papers/essnet-ct-to-mri-summary.txt``):
labelled CT is translated into MRI-like images without paired data, a segmentation constraint keeps
the anatomy in place so the CT labels stay valid, and the translated cases augment a segmenter.
CUT (Park et al. 2020) is also the Diff4MMLiTS paper's Table V baseline synthesizer; that painter lives in
:mod:`diff4mmlits.synthesize.cut_painter` and uses this package as a library (translate imports nothing
from synthesize).

Modules:
    networks      ResNet generator (instance norm, 2D or 3D), PatchGAN discriminator, LSGAN loss, image pool
    sampling      random slices (or 3D patches) of the two unpaired datasets
    cyclegan      two generators, two discriminators, cycle and identity losses
    essnet        CycleGAN plus a segmentation net on the translated images (deformation-invariant)
    patchnce      the PatchNCE loss and its patch-sampling MLP head
    cut           contrastive unpaired translation (PatchNCE + GAN, one generator)
    base          the batch, the network container, gradient averaging under torchrun
    train         the shared training loop, checkpoints, resume, logs
    translator    slice-wise inference: load a model folder, translate arrays, volumes, cases
    stage         dataset-level commands (train-translator, translate)
    report        the translators' section of the run report
"""
