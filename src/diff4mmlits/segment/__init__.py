"""Paper step 4, the Multimodal Segmenter: plan, networks, hybrid data, training, prediction.

``plan.py`` (fingerprint → plan), ``inputs.py`` (channels, missing-phase rule, window/z-score),
``networks.py`` (MONAI backbones), ``dataset.py`` (real + synthetic samples, augmentation),
``train.py``, ``predict.py`` + ``postprocess.py``, and ``stage.py`` (run-folder I/O).
"""
