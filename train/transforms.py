"""Image transforms driven by an explicit per-item ``torch.Generator`` (no torchvision).

Tensor transforms take ``C x H x W`` tensors; PIL transforms take ``PIL.Image`` objects. Random transforms
draw only from the generator they are given, so an item's augmentation is a pure function of
``(seed, epoch, index)`` (see ``item_generator``) and never depends on worker state or draw order.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch
from PIL import Image


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A generator seeded from a hash of ``(seed, epoch, index)``: independent streams per item and epoch."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little"))


def _uniform(gen: torch.Generator, low: float = 0.0, high: float = 1.0) -> float:
    return low + (high - low) * float(torch.rand((), generator=gen))


def _randint(gen: torch.Generator, high: int) -> int:
    """An integer in ``[0, high]`` (inclusive)."""
    return int(torch.randint(0, high + 1, (), generator=gen))


def random_crop(img: torch.Tensor, padding: int, gen: torch.Generator) -> torch.Tensor:
    """Zero-pad by ``padding`` on every side, then crop back to the input size at a random offset."""
    if padding == 0:
        return img
    _, height, width = img.shape
    dy, dx = _randint(gen, 2 * padding) - padding, _randint(gen, 2 * padding) - padding
    out = torch.zeros_like(img)
    # Output row r shows input row r + dy (zero where that falls outside the image); same for columns.
    out[:, max(0, -dy) : height - max(0, dy), max(0, -dx) : width - max(0, dx)] = img[
        :, max(0, dy) : height + min(0, dy), max(0, dx) : width + min(0, dx)
    ]
    return out


def random_hflip(img: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mirror left-right with probability 1/2."""
    return img.flip(-1) if _uniform(gen) < 0.5 else img


def normalize(img: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(img - mean) / std`` per channel; ``mean`` and ``std`` are shaped ``C x 1 x 1``."""
    return (img - mean) / std


def random_resized_crop(
    img: Image.Image,
    size: int,
    gen: torch.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> Image.Image:
    """Crop a random area fraction in ``scale`` with aspect ratio in ``ratio`` (log-uniform), resized
    (bilinear) to ``size`` x ``size``. After 10 failed tries, a center crop with the clamped ratio."""
    width, height = img.size
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * _uniform(gen, *scale)
        aspect = math.exp(_uniform(gen, log_lo, log_hi))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top, left = _randint(gen, height - h), _randint(gen, width - w)
            return img.resize((size, size), Image.BILINEAR, box=(left, top, left + w, top + h))
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif aspect > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    top, left = (height - h) // 2, (width - w) // 2
    return img.resize((size, size), Image.BILINEAR, box=(left, top, left + w, top + h))


def resize_center_crop(img: Image.Image, size: int, crop_fraction: float = 0.875) -> Image.Image:
    """Resize the shorter side to ``round(size / crop_fraction)`` (bilinear), then take the central
    ``size`` x ``size`` crop (the standard ImageNet evaluation transform)."""
    width, height = img.size
    short = round(size / crop_fraction)
    if width <= height:
        new_w, new_h = short, max(short, round(height * short / width))
    else:
        new_w, new_h = max(short, round(width * short / height)), short
    resized = img.resize((new_w, new_h), Image.BILINEAR)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return resized.crop((left, top, left + size, top + size))


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """An RGB/L PIL image as a float32 ``C x H x W`` tensor in [0, 1]."""
    array = np.asarray(img, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.transpose(2, 0, 1).copy()).float().div_(255.0)
