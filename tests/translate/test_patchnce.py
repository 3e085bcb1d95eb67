"""PatchNCE: same-location positives, same-image negatives, temperature."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from diff4mmlits.translate.patchnce import PatchSampleMLP, patch_nce_loss


def test_query_and_key_are_sampled_at_the_same_locations() -> None:
    head = PatchSampleMLP([3], features=8)
    generator = torch.Generator().manual_seed(0)
    source = torch.randn(2, 3, 6, 5)
    output = torch.randn(2, 3, 6, 5)
    keys, locations = head([source], 10, None, generator)
    queries, reused = head([output], 10, locations)
    assert reused[0] is locations[0] and keys[0].shape == (2, 10, 8)
    flat = output.flatten(2).transpose(1, 2)  # (B, 30, C)
    expected = F.normalize(head.heads[0](flat[:, locations[0]]), dim=-1)
    assert torch.allclose(queries[0], expected)
    for j, index in enumerate(locations[0].tolist()):  # location j of the keys is pixel `index` of the source
        y, x = divmod(index, 5)
        assert torch.allclose(keys[0][:, j], F.normalize(head.heads[0](source[:, :, y, x]), dim=-1))


def test_loss_is_low_when_each_query_matches_its_own_location() -> None:
    torch.manual_seed(0)
    keys = F.normalize(torch.randn(2, 16, 8), dim=-1)
    matched = patch_nce_loss(keys.clone(), keys)
    shuffled = patch_nce_loss(keys[:, torch.randperm(16)], keys)
    assert matched < 0.5 < shuffled


def test_negatives_come_from_the_same_image_only() -> None:
    torch.manual_seed(1)
    query, key = F.normalize(torch.randn(2, 12, 8), dim=-1), F.normalize(torch.randn(2, 12, 8), dim=-1)
    both = patch_nce_loss(query, key)
    separate = 0.5 * (patch_nce_loss(query[:1], key[:1]) + patch_nce_loss(query[1:], key[1:]))
    assert torch.allclose(both, separate)


def test_temperature_sharpens_the_loss() -> None:
    torch.manual_seed(2)
    keys = F.normalize(torch.randn(1, 16, 8), dim=-1)
    query = F.normalize(keys + 0.3 * torch.randn(1, 16, 8), dim=-1)
    assert patch_nce_loss(query, keys, temperature=0.07) < patch_nce_loss(query, keys, temperature=1.0)
