"""Datasets for training and evaluation: Fashion-MNIST, CIFAR-10/100, ImageNet-style folders, synthetic.

``build_datasets(cfg, seed)`` returns train / val / test / calibration datasets whose items are
``(float32 C x H x W tensor normalized with info.mean/std, int label)``. The array datasets hold one
shared uint8 array (no per-split copies); folder datasets keep only the file list and decode per item.
Augmentation of item ``i`` in epoch ``e`` draws only from ``item_generator(seed, e, i)``, so a resumed
run sees exactly the same images as an uninterrupted one.
"""

from __future__ import annotations

import gzip
import os
import pickle
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, ClassVar, NamedTuple

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from pydantic import Field, model_validator
from torch.utils.data import Dataset

from bitat_edge.atomic import write_bytes
from bitat_edge.schema import Schema
from train.errors import ConfigError, DataConfigError, DatasetError
from train.sections import Expects, Section
from train.transforms import (
    item_generator,
    normalize,
    pil_to_tensor,
    random_crop,
    random_hflip,
    random_resized_crop,
    resize_center_crop,
)

DATASETS = ("fashion_mnist", "cifar10", "cifar100", "imagefolder", "synthetic")
FIXED_SIZES = {"fashion_mnist": 28, "cifar10": 32, "cifar100": 32}


class DataConfig(Section):
    """Which dataset to load and how to batch and augment it (the config's ``data`` section)."""

    config_key: ClassVar[str] = "data"
    error_class: ClassVar[type[ConfigError]] = DataConfigError

    name: str = "fashion_mnist"  # one of DATASETS
    data_dir: Annotated[str | None, Expects("a path or empty")] = None  # None: FASHION_MNIST_DIR / CIFAR_DIR, then the system location
    download: bool = False  # fashion_mnist only: fetch the IDX files if absent
    val_fraction: float = Field(0.1, ge=0, lt=1)  # seeded split of the training set; 0: val is the test set
    augment: bool = True
    batch_size: int = Field(128, ge=1)
    eval_batch_size: int = Field(500, ge=1)
    num_workers: int = Field(0, ge=0)
    image_size: int | None = Field(None, ge=8)  # imagefolder crop (default 224); synthetic side (default 28)
    synthetic_train: int = Field(256, ge=1)
    synthetic_test: int = Field(128, ge=1)
    synthetic_classes: int = Field(10, ge=2)
    synthetic_channels: int = Field(1, ge=1)
    eval_limit: int | None = Field(None, ge=1)  # cap on test images (None: all)

    @model_validator(mode="after")
    def _fits_the_dataset(self) -> DataConfig:
        if self.name not in DATASETS:
            raise ValueError(f"unknown dataset data.name={self.name!r}; choose one of: {', '.join(DATASETS)}")
        if self.image_size is not None and self.name in FIXED_SIZES:
            side = FIXED_SIZES[self.name]
            raise ValueError(f"data.image_size={self.image_size} does not apply to {self.name} "
                             f"(fixed {side}x{side}); leave it empty")
        if self.download and self.name != "fashion_mnist":
            raise ValueError(f"data.download=true works for fashion_mnist only, not {self.name}")
        return self


class DatasetInfo(Schema):
    """What later stages need to know about the data (stored in checkpoints, recorded in the manifest)."""

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    mean: list[float]
    std: list[float]
    classes: list[str]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one model input."""
        return self.in_channels, self.image_size, self.image_size


@dataclass
class DataSplits:
    """The four views of one dataset; ``train`` is augmented (if configured) and has ``set_epoch``."""

    train: Dataset
    val: Dataset
    test: Dataset
    calibration: Dataset
    info: DatasetInfo


class LoadedArrays(NamedTuple):
    """A whole in-memory dataset: uint8 ``N x C x H x W`` images, int64 labels, and its crop padding."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    info: DatasetInfo
    crop_padding: int


# --------------------------------------------------------------------------- dataset views


class _IndexedView(Dataset):
    """A view (``indices``) of a dataset whose item ``i`` in epoch ``e`` draws its augmentation from
    ``item_generator(seed, e, i)``, so an item's augmentation is independent of loader state."""

    def __init__(self, indices: np.ndarray, info: DatasetInfo, seed: int) -> None:
        self.indices = indices
        self.mean = torch.tensor(info.mean).view(-1, 1, 1)
        self.std = torch.tensor(info.std).view(-1, 1, 1)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.indices)


class ArrayDataset(_IndexedView):
    """A view (``indices``) of a shared ``N x C x H x W`` uint8 tensor; when ``crop_padding`` is set, each
    item gets a random crop with that zero padding and a random horizontal flip."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        indices: np.ndarray,
        info: DatasetInfo,
        *,
        seed: int,
        crop_padding: int | None,
    ) -> None:
        super().__init__(indices, info, seed)
        self.images, self.labels, self.crop_padding = images, labels, crop_padding

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        j = int(self.indices[i])
        img = self.images[j].float().div_(255.0)
        if self.crop_padding is not None:
            gen = item_generator(self.seed, self.epoch, i)
            img = random_hflip(random_crop(img, self.crop_padding, gen), gen)
        return normalize(img, self.mean, self.std), int(self.labels[j])


class FolderDataset(_IndexedView):
    """A view of an image file list, decoded per item; random-resized-crop + flip when augmenting,
    else resize + center crop."""

    def __init__(
        self,
        samples: list[tuple[Path, int]],
        indices: np.ndarray,
        info: DatasetInfo,
        *,
        seed: int,
        augment: bool,
    ) -> None:
        super().__init__(indices, info, seed)
        self.samples, self.size, self.augment = samples, info.image_size, augment

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[int(self.indices[i])]
        try:
            with Image.open(path) as raw:
                img = raw.convert("RGB")
        except (OSError, UnidentifiedImageError) as exc:
            raise DatasetError(f"cannot decode image {path} ({exc}); remove or replace the file") from None
        if self.augment:
            gen = item_generator(self.seed, self.epoch, i)
            img = random_resized_crop(img, self.size, gen)
            tensor = random_hflip(pil_to_tensor(img), gen)
        else:
            tensor = pil_to_tensor(resize_center_crop(img, self.size))
        return normalize(tensor, self.mean, self.std), label


# --------------------------------------------------------------------------- entry point


def build_datasets(cfg: DataConfig, seed: int) -> DataSplits:
    """Load ``cfg.name`` and return its train/val/test/calibration views (see the module docstring)."""
    if cfg.name == "imagefolder":
        return _imagefolder_splits(cfg, seed)
    loaders = {
        "fashion_mnist": _load_fashion_mnist,
        "cifar10": _load_cifar10,
        "cifar100": _load_cifar100,
        "synthetic": _load_synthetic,
    }
    arrays = loaders[cfg.name](cfg)
    train_idx, val_idx = split_indices(len(arrays.train_x), cfg.val_fraction, seed)
    n_test = len(arrays.test_x) if cfg.eval_limit is None else min(cfg.eval_limit, len(arrays.test_x))

    def view(on_train: bool, idx: np.ndarray, augment: bool) -> ArrayDataset:
        images, labels = (arrays.train_x, arrays.train_y) if on_train else (arrays.test_x, arrays.test_y)
        padding = arrays.crop_padding if augment else None
        return ArrayDataset(images, labels, idx, arrays.info, seed=seed, crop_padding=padding)

    test = view(False, np.arange(n_test), False)
    return DataSplits(
        train=view(True, train_idx, cfg.augment),
        val=view(True, val_idx, False) if len(val_idx) else test,
        test=test,
        calibration=view(True, train_idx, False),
        info=arrays.info,
    )


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of ``range(n)`` into sorted (train, val) index arrays; val has
    ``round(n * val_fraction)`` items, at least one when ``val_fraction > 0``."""
    n_val = 0 if val_fraction == 0 else max(1, round(n * val_fraction))
    if n_val >= n:
        raise DataConfigError(
            f"data.val_fraction={val_fraction} leaves no training images out of {n}; lower it"
        )
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


# --------------------------------------------------------------------------- Fashion-MNIST

FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
FASHION_MNIST_COUNTS = {"train": 60000, "test": 10000}
FASHION_MNIST_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_MNIST_CACHE = Path("~/.cache/bitat-edge/fashion-mnist")
IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC = 2051, 2049
_OFFLINE_FASHION_MNIST = (
    "get it with `apt-get install dataset-fashion-mnist`, or point FASHION_MNIST_DIR or --data-dir at a folder "
    "holding the four IDX files (.gz or plain)"
)
_HOW_TO_GET_FASHION_MNIST = _OFFLINE_FASHION_MNIST + ", or set data.download=true on a machine with internet"


def fashion_mnist_candidates(data_dir: str | None) -> list[Path]:
    """The folders searched for the IDX files, in order: ``data_dir`` alone when given, else
    ``$FASHION_MNIST_DIR``, the Debian package's folder and the download cache."""
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    env = os.environ.get("FASHION_MNIST_DIR")
    dirs = [Path(env).expanduser()] if env else []
    return dirs + [Path(FASHION_MNIST_SYSTEM_DIR), FASHION_MNIST_CACHE.expanduser()]


def find_idx_files(folder: Path) -> dict[str, Path] | None:
    """The four IDX files in ``folder`` (plain preferred over ``.gz``), or None if any is missing."""
    found = {}
    for key, base in FASHION_MNIST_FILES.items():
        for name in (base, base + ".gz"):
            if (folder / name).is_file():
                found[key] = folder / name
                break
        else:
            return None
    return found


def _load_fashion_mnist(cfg: DataConfig) -> LoadedArrays:
    candidates = fashion_mnist_candidates(cfg.data_dir)
    files = next((f for f in map(find_idx_files, candidates) if f is not None), None)
    if files is None and cfg.download:
        files = download_fashion_mnist(candidates[0] if cfg.data_dir else FASHION_MNIST_CACHE.expanduser())
    if files is None:
        looked = ", ".join(str(c) for c in candidates)
        raise DatasetError(
            f"Fashion-MNIST not found (looked for the 4 IDX files in: {looked}); {_HOW_TO_GET_FASHION_MNIST}"
        )
    train_x, train_y = load_idx_pair(files["train_images"], files["train_labels"], num_classes=10)
    test_x, test_y = load_idx_pair(files["test_images"], files["test_labels"], num_classes=10)
    info = DatasetInfo(name="fashion_mnist", num_classes=10, in_channels=1, image_size=28, mean=[0.2860], std=[0.3530],
                       classes=list(FASHION_MNIST_CLASSES))
    return LoadedArrays(train_x, train_y, test_x, test_y, info, crop_padding=2)


def _gunzip(payload: bytes, source: str) -> bytes:
    try:
        return gzip.decompress(payload)
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(
            f"{source} is not a valid gzip file ({exc}); delete it and get the dataset again"
        ) from None


def parse_idx(data: bytes, source: str, expected_magic: int) -> np.ndarray:
    """Parse the bytes of an IDX file of unsigned bytes (magic ``expected_magic``) into a uint8 array;
    ``source`` names the file in errors."""
    if len(data) < 4:
        raise DatasetError(f"{source} is truncated ({len(data)} bytes); delete it and get the dataset again")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        kind = "label" if expected_magic == IDX_LABELS_MAGIC else "image"
        raise DatasetError(
            f"{source} has IDX magic number {magic}, expected {expected_magic}; it is not an IDX {kind} file, "
            "get the dataset again"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{source} is truncated inside its header; delete it and get the dataset again")
    dims = tuple(int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    size = int(np.prod(dims))
    if len(data) - header != size:
        what = "truncated" if len(data) - header < size else "longer than its header says"
        raise DatasetError(
            f"{source} is {what}: header {dims} needs {size} data bytes, the file has {len(data) - header}; "
            "delete it and get the dataset again"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """Parse one IDX file (gzip-compressed when named ``*.gz``) into a uint8 array."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read {path} ({exc.strerror}); check its permissions") from None
    return parse_idx(_gunzip(raw, str(path)) if path.suffix == ".gz" else raw, str(path), expected_magic)


def load_idx_pair(
    images_path: Path, labels_path: Path, *, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as an ``N x 1 x 28 x 28`` uint8 tensor and labels as an int64 tensor, cross-checked."""
    images = read_idx(images_path, IDX_IMAGES_MAGIC)
    labels = read_idx(labels_path, IDX_LABELS_MAGIC)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DatasetError(f"{images_path} holds images of shape {images.shape[1:]}, expected 28x28")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DatasetError(
            f"{labels_path} has {labels.shape[0] if labels.ndim else 0} labels but {images_path} has "
            f"{len(images)} images; the files do not belong together, get the dataset again"
        )
    if len(labels) and int(labels.max()) >= num_classes:
        raise DatasetError(f"{labels_path} has label {int(labels.max())}, outside 0..{num_classes - 1}")
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def download_fashion_mnist(dest: Path, base_url: str | None = None, timeout: float = 60.0) -> dict[str, Path]:
    """Fetch the four ``.gz`` IDX files from ``base_url`` (default ``$FASHION_MNIST_URL`` or the official
    mirror) into ``dest``, verify each (IDX structure, 60000/10000 items) and write it atomically."""
    base = base_url or os.environ.get("FASHION_MNIST_URL") or FASHION_MNIST_URL
    if not base.endswith("/"):
        base += "/"
    for key, stem in FASHION_MNIST_FILES.items():
        target = dest / f"{stem}.gz"
        if target.is_file():
            continue
        url = base + target.name
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                payload = response.read()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DatasetError(
                f"could not download Fashion-MNIST from {url} ({reason}); without internet, {_OFFLINE_FASHION_MNIST}"
            ) from None
        magic = IDX_IMAGES_MAGIC if key.endswith("images") else IDX_LABELS_MAGIC
        array = parse_idx(
            _gunzip(payload, f"the file downloaded from {url}"), f"the file downloaded from {url}", magic
        )
        count = FASHION_MNIST_COUNTS[key.split("_")[0]]
        expected = (count, 28, 28) if magic == IDX_IMAGES_MAGIC else (count,)
        if array.shape != expected:
            raise DatasetError(
                f"the file downloaded from {url} has shape {array.shape}, expected {expected}; "
                "check the download URL (FASHION_MNIST_URL)"
            )
        write_bytes(target, payload)
    files = find_idx_files(dest)
    if files is None:  # only if the folder changed under us
        raise DatasetError(f"downloaded Fashion-MNIST files vanished from {dest}; download again")
    return files


# --------------------------------------------------------------------------- CIFAR

CIFAR10_STATS = ([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616])
CIFAR100_STATS = ([0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762])
_HOW_TO_GET_CIFAR = (
    "download the python version from https://www.cs.toronto.edu/~kriz/cifar.html, extract it and point "
    "--data-dir or CIFAR_DIR at the extracted folder or its parent"
)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays (what the CIFAR files hold), nothing executable."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("_codecs", "encode"),  # how Python 3 pickles bytes at protocol 2 (numpy array payloads)
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    try:
        with path.open("rb") as handle:
            obj = _ArrayUnpickler(handle, encoding="bytes").load()
    except (
        OSError,
        EOFError,
        pickle.UnpicklingError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
    ) as exc:
        raise DatasetError(
            f"{path} is not a readable CIFAR pickle ({exc}); extract the archive again"
        ) from None
    if not isinstance(obj, dict):
        raise DatasetError(
            f"{path} holds a {type(obj).__name__}, expected a CIFAR dict; extract the archive again"
        )
    return obj


def _find_cifar_dir(data_dir: str | None, folder: str, marker: str, name: str) -> Path:
    roots = (
        [Path(data_dir).expanduser()]
        if data_dir is not None
        else ([Path(os.environ["CIFAR_DIR"]).expanduser()] if os.environ.get("CIFAR_DIR") else [])
    )
    looked = []
    for root in roots:
        for candidate in (root, root / folder):
            looked.append(str(candidate))
            if (candidate / marker).is_file():
                return candidate
    where = ", ".join(looked) if looked else "nowhere: neither --data-dir nor CIFAR_DIR is set"
    raise DatasetError(f"{name} not found (looked for {folder}/{marker} in: {where}); {_HOW_TO_GET_CIFAR}")


def _cifar_arrays(path: Path, label_key: bytes, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    batch = _unpickle(path)
    data, labels = batch.get(b"data"), batch.get(label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise DatasetError(
            f"{path}: 'data' must be a uint8 array of shape (N, 3072), got {shape}; extract the archive again"
        )
    try:
        labels_arr = np.asarray(labels if labels is not None else [], dtype=np.int64)
    except (ValueError, TypeError):
        raise DatasetError(
            f"{path}: {label_key.decode()} are not integers; extract the archive again"
        ) from None
    if labels_arr.shape != (len(data),):
        raise DatasetError(
            f"{path}: {label_key.decode()} has {labels_arr.size} entries for {len(data)} images; extract the archive again"
        )
    if len(labels_arr) and (labels_arr.min() < 0 or labels_arr.max() >= num_classes):
        raise DatasetError(f"{path}: labels outside 0..{num_classes - 1}; extract the archive again")
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(labels_arr)


def _class_names(path: Path, key: bytes, num_classes: int) -> list[str]:
    names = _unpickle(path).get(key)
    if not isinstance(names, list) or len(names) != num_classes:
        raise DatasetError(f"{path}: expected {num_classes} {key.decode()}, extract the archive again")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _load_cifar10(cfg: DataConfig) -> LoadedArrays:
    root = _find_cifar_dir(cfg.data_dir, "cifar-10-batches-py", "batches.meta", "CIFAR-10")
    parts = [_cifar_arrays(root / f"data_batch_{k}", b"labels", 10) for k in range(1, 6)]
    test_x, test_y = _cifar_arrays(root / "test_batch", b"labels", 10)
    mean, std = CIFAR10_STATS
    info = DatasetInfo(name="cifar10", num_classes=10, in_channels=3, image_size=32, mean=mean, std=std,
                       classes=_class_names(root / "batches.meta", b"label_names", 10))
    train_x, train_y = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    return LoadedArrays(train_x, train_y, test_x, test_y, info, crop_padding=4)


def _load_cifar100(cfg: DataConfig) -> LoadedArrays:
    root = _find_cifar_dir(cfg.data_dir, "cifar-100-python", "meta", "CIFAR-100")
    train_x, train_y = _cifar_arrays(root / "train", b"fine_labels", 100)
    test_x, test_y = _cifar_arrays(root / "test", b"fine_labels", 100)
    mean, std = CIFAR100_STATS
    info = DatasetInfo(name="cifar100", num_classes=100, in_channels=3, image_size=32, mean=mean, std=std,
                       classes=_class_names(root / "meta", b"fine_label_names", 100))
    return LoadedArrays(train_x, train_y, test_x, test_y, info, crop_padding=4)


# --------------------------------------------------------------------------- synthetic

SYNTHETIC_DATA_SEED = 20240601
SYNTHETIC_TILE = 4


def _load_synthetic(cfg: DataConfig) -> LoadedArrays:
    """Class-dependent textures: each class tiles the image with its own random, left-right symmetric
    4x4 tile (per-image random offset) plus per-pixel noise, so class evidence is local, survives crops
    and flips, and a tiny conv net learns it in a few steps. A fixed data seed makes the images the same
    whatever the run seed."""
    side, channels, classes = cfg.image_size or 28, cfg.synthetic_channels, cfg.synthetic_classes
    gen = torch.Generator().manual_seed(SYNTHETIC_DATA_SEED)
    half = (
        torch.randint(0, 2, (classes, channels, SYNTHETIC_TILE, SYNTHETIC_TILE // 2), generator=gen) * 2.0 - 1
    )
    tiles = torch.cat([half, half.flip(-1)], dim=-1)
    reps = side // SYNTHETIC_TILE + 2
    canvas = tiles.repeat(1, 1, reps, reps)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = (torch.arange(n) % classes)[torch.randperm(n, generator=gen)]
        offsets = torch.randint(0, SYNTHETIC_TILE, (n, 2), generator=gen).tolist()
        pattern = torch.stack(
            [
                canvas[label, :, dy : dy + side, dx : dx + side]
                for label, (dy, dx) in zip(labels.tolist(), offsets, strict=True)
            ]
        )
        noise = torch.randn(n, channels, side, side, generator=gen)
        values = 128 + 80 * pattern + 20 * noise
        return values.round().clamp(0, 255).to(torch.uint8), labels

    train_x, train_y = make(cfg.synthetic_train)
    test_x, test_y = make(cfg.synthetic_test)
    pixels = train_x.float().div(255).transpose(0, 1).reshape(channels, -1)
    info = DatasetInfo(
        name="synthetic",
        num_classes=classes,
        in_channels=channels,
        image_size=side,
        mean=pixels.mean(1).tolist(),
        std=pixels.std(1).clamp_min(1e-3).tolist(),
        classes=[f"class_{k}" for k in range(classes)],
    )
    return LoadedArrays(train_x, train_y, test_x, test_y, info, crop_padding=max(1, side // 8))


# --------------------------------------------------------------------------- ImageFolder

IMAGENET_STATS = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
DEFAULT_FOLDER_SIZE = 224


def list_image_folder(
    root: Path, class_names: list[str] | None = None
) -> tuple[list[str], list[tuple[Path, int]]]:
    """Class names (sorted sub-folders, or ``class_names``) and the sorted ``(file, label)`` list of ``root``;
    every class folder found must hold at least one image."""
    if not root.is_dir():
        raise DatasetError(
            f"image folder {root} does not exist; arrange the data as {root}/<class>/<image> (jpg, png, ...)"
        )
    found = sorted(entry.name for entry in root.iterdir() if entry.is_dir())
    if not found:
        raise DatasetError(f"{root} has no class sub-folders; arrange the data as {root}/<class>/<image>")
    names = class_names if class_names is not None else found
    unknown = sorted(set(found) - set(names))
    if unknown:
        raise DatasetError(
            f"{root} has class folders not in the training set: {', '.join(unknown)}; remove or rename them"
        )
    samples = []
    for label, name in enumerate(names):
        folder = root / name
        if not folder.is_dir():
            continue
        files = sorted(
            Path(dirpath) / f
            for dirpath, _, fnames in os.walk(folder, followlinks=True)
            for f in fnames
            if Path(f).suffix.lower() in IMAGE_EXTENSIONS
        )
        if not files:
            raise DatasetError(
                f"class folder {folder} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))}); add images or remove it"
            )
        samples.extend((path, label) for path in files)
    return names, samples


def _imagefolder_splits(cfg: DataConfig, seed: int) -> DataSplits:
    if cfg.data_dir is None:
        raise DatasetError(
            "data.name=imagefolder needs data.data_dir (--data-dir) with train/<class>/ and val/<class>/"
        )
    root = Path(cfg.data_dir).expanduser()
    classes, train_samples = list_image_folder(root / "train")
    _, test_samples = list_image_folder(root / "val", classes)
    size = cfg.image_size or DEFAULT_FOLDER_SIZE
    mean, std = IMAGENET_STATS
    info = DatasetInfo(name="imagefolder", num_classes=len(classes), in_channels=3, image_size=size, mean=mean,
                       std=std, classes=classes)
    train_idx, val_idx = split_indices(len(train_samples), cfg.val_fraction, seed)
    n_test = len(test_samples) if cfg.eval_limit is None else min(cfg.eval_limit, len(test_samples))
    test = FolderDataset(test_samples, np.arange(n_test), info, seed=seed, augment=False)
    return DataSplits(
        train=FolderDataset(train_samples, train_idx, info, seed=seed, augment=cfg.augment),
        val=FolderDataset(train_samples, val_idx, info, seed=seed, augment=False) if len(val_idx) else test,
        test=test,
        calibration=FolderDataset(train_samples, train_idx, info, seed=seed, augment=False),
        info=info,
    )
