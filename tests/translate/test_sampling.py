"""Slice and cube sampling: shapes, padding, labels aligned with their images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diff4mmlits.translate.sampling import SampleSource


def source_with_coordinates() -> SampleSource:
    """Images whose value encodes (case, z, y, x), and labels that equal the image value mod 7."""
    images, labels = [], []
    for case, shape in enumerate([(3, 20, 24), (5, 40, 36)]):
        z, y, x = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
        code = (case * 1000 + z * 100 + y * 10 + x).astype(np.float32)
        images.append(code[None])
        labels.append((code % 7).astype(np.uint8))
    return SampleSource(images, labels)


def test_slices_are_cropped_padded_and_labels_follow_the_image() -> None:
    source = source_with_coordinates()
    generator = torch.Generator().manual_seed(0)
    images, labels = source.sample(6, 32, 2, generator)
    assert images.shape == (6, 1, 32, 32) and labels.shape == (6, 1, 32, 32)
    inside = images > -1  # padding value is -1
    assert torch.equal(labels[inside], (images[inside] % 7).long())
    assert (~inside).any()  # the first case (20 × 24) had to be padded


def test_cubes_in_3d() -> None:
    source = source_with_coordinates()
    images, labels = source.sample(8, 16, 3, torch.Generator().manual_seed(1))
    assert images.shape == (8, 1, 16, 16, 16) and labels.shape == (8, 1, 16, 16, 16)
    inside = images > -1  # padding value is -1
    assert torch.equal(labels[inside], (images[inside] % 7).long())
    first_case = images.amax(dim=(1, 2, 3, 4)) < 1000
    assert first_case.any() and not first_case.all()  # the seed draws from both cases
    assert (~inside[first_case]).any()  # the first case's 3 slices were padded to 16
    both = inside[..., 1:] & inside[..., :-1]  # a crop of the volume: x steps by 1 (y by 10, z by 100)
    assert both.any() and torch.equal(images.diff(dim=-1)[both], torch.ones(int(both.sum())))


def test_slices_are_drawn_from_every_case_and_the_seed_fixes_them() -> None:
    source = source_with_coordinates()
    a, _ = source.sample(40, 16, 2, torch.Generator().manual_seed(3))
    b, _ = source.sample(40, 16, 2, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    cases = {int(v) // 1000 for v in a.amax(dim=(1, 2, 3))}
    assert cases == {0, 1}


def test_mismatched_labels_are_refused() -> None:
    with pytest.raises(ValueError, match="label shape"):
        SampleSource([np.zeros((1, 2, 4, 4), np.float32)], [np.zeros((2, 4, 5), np.uint8)])
