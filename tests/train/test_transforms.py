"""Transforms: determinism per (seed, epoch, index), crop/flip geometry, PIL resize and crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from train.transforms import (
    item_generator,
    normalize,
    pil_to_tensor,
    random_crop,
    random_hflip,
    random_resized_crop,
    resize_center_crop,
)


def _image(channels: int = 2, size: int = 8) -> torch.Tensor:
    return torch.arange(1, channels * size * size + 1, dtype=torch.float32).view(channels, size, size)


def test_item_generator_streams() -> None:
    def draws(seed: int, epoch: int, index: int) -> torch.Tensor:
        return torch.rand(4, generator=item_generator(seed, epoch, index))

    assert torch.equal(draws(0, 3, 17), draws(0, 3, 17))
    assert not torch.equal(draws(0, 3, 17), draws(0, 4, 17))
    assert not torch.equal(draws(0, 3, 17), draws(0, 3, 18))
    assert not torch.equal(draws(0, 3, 17), draws(1, 3, 17))
    # No aliasing between (epoch, index) pairs that a linear seed formula could confuse.
    assert not torch.equal(draws(0, 1, 0), draws(0, 0, 100_003))


def test_random_crop_is_a_window_of_the_zero_padded_image() -> None:
    img, pad = _image(), 2
    padded = torch.nn.functional.pad(img, (pad, pad, pad, pad))
    windows = [padded[:, y : y + 8, x : x + 8] for y in range(2 * pad + 1) for x in range(2 * pad + 1)]
    seen = set()
    for index in range(200):
        out = random_crop(img, pad, item_generator(0, 0, index))
        matches = [k for k, window in enumerate(windows) if torch.equal(out, window)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) == len(windows)  # every offset occurs
    assert random_crop(img, 0, item_generator(0, 0, 0)) is img


def test_random_hflip_takes_both_branches() -> None:
    img = _image()
    outcomes = {torch.equal(random_hflip(img, item_generator(0, 0, i)), img.flip(-1)) for i in range(50)}
    assert outcomes == {True, False}
    for i in range(20):
        out = random_hflip(img, item_generator(0, 0, i))
        assert torch.equal(out, img) or torch.equal(out, img.flip(-1))


def test_normalize() -> None:
    img = torch.ones(2, 3, 3)
    out = normalize(img, torch.tensor([0.5, 1.0]).view(-1, 1, 1), torch.tensor([0.25, 2.0]).view(-1, 1, 1))
    assert torch.allclose(out[0], torch.full((3, 3), 2.0)) and torch.allclose(out[1], torch.zeros(3, 3))


def _gradient_pil(width: int, height: int) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], axis=-1).astype(np.uint8), "RGB")


def test_random_resized_crop_size_and_determinism() -> None:
    img = _gradient_pil(60, 40)
    a = random_resized_crop(img, 24, item_generator(5, 1, 2))
    b = random_resized_crop(img, 24, item_generator(5, 1, 2))
    c = random_resized_crop(img, 24, item_generator(5, 2, 2))
    assert a.size == (24, 24)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_random_resized_crop_falls_back_to_center_crop() -> None:
    # A 200x4 strip cannot host a crop with aspect ratio in [3/4, 4/3] covering >= 90 % of its area.
    strip = _gradient_pil(200, 4)
    out = random_resized_crop(strip, 8, item_generator(0, 0, 0), scale=(0.9, 1.0))
    expected = strip.resize((8, 8), Image.BILINEAR, box=(97, 0, 102, 4))  # centered 5x4 (ratio 4/3)
    assert np.array_equal(np.asarray(out), np.asarray(expected))


@pytest.mark.parametrize(("width", "height"), [(64, 48), (48, 64), (16, 16)])
def test_resize_center_crop(width: int, height: int) -> None:
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[height // 2 - 2 : height // 2 + 2, width // 2 - 2 : width // 2 + 2] = 255
    out = resize_center_crop(Image.fromarray(array), 14)
    assert out.size == (14, 14)
    tensor = pil_to_tensor(out)
    assert tensor[:, 7, 7].min() > 0.5  # the bright center stays in the middle
    assert tensor[:, 0, 0].max() < 0.1


def test_pil_to_tensor() -> None:
    gray = pil_to_tensor(Image.fromarray(np.full((3, 5), 255, dtype=np.uint8), "L"))
    assert gray.shape == (1, 3, 5) and gray.dtype == torch.float32 and float(gray.max()) == 1.0
    rgb = pil_to_tensor(_gradient_pil(5, 3))
    assert rgb.shape == (3, 3, 5)
    assert float(rgb[0, 0, 0]) == 0.0 and float(rgb[0, 0, -1]) == 1.0 and float(rgb[1, -1, 0]) == 1.0
