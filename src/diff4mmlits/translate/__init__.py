"""Unpaired cross-modality translation: CycleGAN, EssNet (CycleGAN + segmentation) and CUT.

The second seed method of diff4mmlits (Rafiq et al. 2025, ``papers/essnet-ct-to-mri-summary.txt``):
labelled CT is translated into MRI-like images without paired data, a segmentation constraint keeps
the anatomy in place so the CT labels stay valid, and the translated cases augment a segmenter.
CUT (Park et al. 2020) is also the Diff4MMLiTS paper's Table V baseline synthesizer.

Modules:
    networks      ResNet generator (instance norm, 2D or 3D), PatchGAN discriminator, LSGAN loss, image pool
    sampling      random slices (or 3D patches) of the two unpaired datasets
    cyclegan      two generators, two discriminators, cycle and identity losses
    essnet        CycleGAN plus a segmentation net on the translated images (deformation-invariant)
    patchnce      the PatchNCE loss and its patch-sampling MLP head
    cut           contrastive unpaired translation (PatchNCE + GAN, one generator)
    base          the batch, the network container, gradient averaging under torchrun
    train         the shared training loop, checkpoints, resume, logs; slice-wise inference
    phantom_mri   an MRI-like rendering of the phantom's anatomy, and unpaired CT / MRI sets
    stage         dataset-level commands (train-translator, translate)
    cut_painter   CUT as a tumor painter for ``synthesize --method cut`` (the paper's Table V baseline)
    report        the translators' section of the run report
"""
