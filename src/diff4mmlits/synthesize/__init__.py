"""The Multimodal CT Synthesizer (paper §III-B): random tumor masks, a VQ autoencoder, a latent
diffusion model conditioned on the mask, sampling and blending, and a handcrafted baseline.

The Python API is in :mod:`diff4mmlits.synthesize.painters` (``load_painter``, ``PAINTERS``); the painter
contract, :class:`~diff4mmlits.synthesize.painter.TumorPainter`, in :mod:`diff4mmlits.synthesize.painter`.
"""
