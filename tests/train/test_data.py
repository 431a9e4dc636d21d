"""Datasets: every loader on generated files (and the real Fashion-MNIST), corrupt inputs, the download
path against a local HTTP server, splits, and deterministic augmentation."""

from __future__ import annotations

import functools
import gzip
import http.server
import os
import pickle
import re
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from train import data
from train.data import DataConfig, DataConfigError, DatasetError, build_datasets
from train.models import build_model

REAL_FASHION_MNIST = Path(data.FASHION_MNIST_SYSTEM_DIR)


# --------------------------------------------------------------------------- helpers


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """An IDX file of unsigned bytes holding ``array``."""
    magic = magic if magic is not None else 0x0800 + array.ndim
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_fashion_mnist(folder: Path, n_train: int = 20, n_test: int = 10, gz: bool = True) -> Path:
    """Generated IDX files with Fashion-MNIST's names: image k of a split is filled with value k."""
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None], (n, 28, 28))
        labels = np.arange(n) % 10
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            payload = idx_bytes(array)
            name = f"{prefix}-{kind}-ubyte"
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(payload, compresslevel=1))
            else:
                (folder / name).write_bytes(payload)
    return folder


@pytest.fixture
def no_default_dirs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Point every default Fashion-MNIST / CIFAR location at empty temporary places."""
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)
    monkeypatch.delenv("FASHION_MNIST_URL", raising=False)
    monkeypatch.delenv("CIFAR_DIR", raising=False)
    monkeypatch.setattr(data, "FASHION_MNIST_SYSTEM_DIR", str(tmp_path / "system"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def fmnist(folder: Path, **overrides) -> DataConfig:
    return DataConfig(name="fashion_mnist", data_dir=str(folder), **overrides)


# --------------------------------------------------------------------------- config


def test_config_fields_are_the_documented_api() -> None:
    fields = {name: f.default for name, f in DataConfig.model_fields.items()}
    assert fields == {
        "name": "fashion_mnist", "data_dir": None, "download": False, "val_fraction": 0.1, "augment": True,
        "batch_size": 128, "eval_batch_size": 500, "num_workers": 0, "image_size": None, "synthetic_train": 256,
        "synthetic_test": 128, "synthetic_classes": 10, "synthetic_channels": 1, "eval_limit": None,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": "mnist"}, "unknown dataset data.name='mnist'; choose one of: fashion_mnist, cifar10"),
        ({"val_fraction": 1.0}, r"val_fraction must be in \[0, 1\)"),
        ({"val_fraction": "0.1"}, r"val_fraction must be in \[0, 1\)"),
        ({"augment": "yes"}, "data.augment must be true or false"),
        ({"data_dir": 3}, "data.data_dir must be a path or empty"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"num_workers": True}, "num_workers must be an integer"),
        ({"image_size": 64}, "does not apply to fashion_mnist"),
        ({"name": "synthetic", "eval_limit": 0}, "eval_limit must be empty or an integer >= 1"),
        ({"name": "cifar10", "download": True}, "download=true works for fashion_mnist only"),
    ],
)
def test_config_validation(overrides: dict, message: str) -> None:
    with pytest.raises(DataConfigError, match=message) as info:
        DataConfig(**overrides)
    assert isinstance(info.value, ValueError) and isinstance(info.value, DatasetError)


# --------------------------------------------------------------------------- Fashion-MNIST (generated files)


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_idx_gz_and_plain(tmp_path: Path, gz: bool) -> None:
    splits = build_datasets(fmnist(write_fashion_mnist(tmp_path, gz=gz), val_fraction=0.25), seed=0)
    assert (len(splits.train), len(splits.val), len(splits.test), len(splits.calibration)) == (15, 5, 10, 15)
    assert splits.info.num_classes == 10 and splits.info.in_channels == 1 and splits.info.image_size == 28
    assert splits.info.classes[0] == "T-shirt/top" and splits.info.classes[-1] == "Ankle boot"
    image, label = splits.test[7]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32 and label == 7
    assert torch.allclose(image, torch.full((1, 28, 28), (7 / 255 - 0.2860) / 0.3530))


def test_fashion_mnist_lookup_env_then_system(no_default_dirs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_fashion_mnist(no_default_dirs / "system", n_train=30)
    assert len(build_datasets(DataConfig(val_fraction=0), seed=0).calibration) == 30
    monkeypatch.setenv("FASHION_MNIST_DIR", str(write_fashion_mnist(no_default_dirs / "env", n_train=40)))
    assert len(build_datasets(DataConfig(val_fraction=0), seed=0).calibration) == 40


def test_fashion_mnist_missing_lists_every_place(
    no_default_dirs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FASHION_MNIST_DIR", str(no_default_dirs / "env"))
    with pytest.raises(DatasetError) as info:
        build_datasets(DataConfig(), seed=0)
    message = str(info.value)
    for place in ("env", "system", "home/.cache/bitat-edge/fashion-mnist"):
        assert str(no_default_dirs / place) in message
    for hint in (
        "apt-get install dataset-fashion-mnist",
        "FASHION_MNIST_DIR",
        "--data-dir",
        "data.download=true",
    ):
        assert hint in message
    # An explicit data_dir is the only place looked at.
    with pytest.raises(DatasetError, match=re.escape(f"in: {no_default_dirs / 'given'});")):
        build_datasets(fmnist(no_default_dirs / "given"), seed=0)


def test_fashion_mnist_partial_folder_is_missing(tmp_path: Path) -> None:
    write_fashion_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match="not found"):
        build_datasets(fmnist(tmp_path), seed=0)


def _replace(folder: Path, name: str, payload: bytes) -> None:
    (folder / f"{name}.gz").write_bytes(gzip.compress(payload))


@pytest.mark.parametrize(
    ("name", "payload", "message"),
    [
        (
            "train-images-idx3-ubyte",
            idx_bytes(np.zeros((20, 28, 28)), magic=2049),
            "magic number 2049, expected 2051",
        ),
        ("train-labels-idx1-ubyte", idx_bytes(np.zeros((20, 28, 28))), "magic number 2051, expected 2049"),
        ("train-images-idx3-ubyte", idx_bytes(np.zeros((20, 28, 28)))[:-100], "is truncated: header"),
        ("train-images-idx3-ubyte", idx_bytes(np.zeros((20, 28, 28))) + b"x", "longer than its header says"),
        ("train-images-idx3-ubyte", idx_bytes(np.zeros((20, 28, 28)))[:10], "truncated inside its header"),
        ("train-images-idx3-ubyte", b"\x00\x00", r"is truncated \(2 bytes\)"),
        ("train-labels-idx1-ubyte", idx_bytes(np.zeros(19)), "has 19 labels but .* has 20 images"),
        ("train-labels-idx1-ubyte", idx_bytes(np.full(20, 10)), r"label 10, outside 0\.\.9"),
        ("t10k-images-idx3-ubyte", idx_bytes(np.zeros((10, 32, 32))), r"shape \(32, 32\), expected 28x28"),
    ],
)
def test_fashion_mnist_corrupt_files(tmp_path: Path, name: str, payload: bytes, message: str) -> None:
    write_fashion_mnist(tmp_path)
    _replace(tmp_path, name, payload)
    with pytest.raises(DatasetError, match=message) as info:
        build_datasets(fmnist(tmp_path), seed=0)
    assert name in str(info.value)


def test_fashion_mnist_corrupt_gzip(tmp_path: Path) -> None:
    write_fashion_mnist(tmp_path)
    good = (tmp_path / "train-images-idx3-ubyte.gz").read_bytes()
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.gz is not a valid gzip file"):
        build_datasets(fmnist(tmp_path), seed=0)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match="not a valid gzip file"):
        build_datasets(fmnist(tmp_path), seed=0)


# --------------------------------------------------------------------------- download


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def http_root(tmp_path: Path):
    """A local HTTP server on 127.0.0.1 serving ``tmp_path / 'www'``; yields (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=root)
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/files"
    server.shutdown()
    server.server_close()


def test_download_into_data_dir(http_root, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, url = http_root
    write_fashion_mnist(root / "files", n_train=60000, n_test=10000)
    monkeypatch.setenv("FASHION_MNIST_URL", url)
    target = tmp_path / "dl"
    splits = build_datasets(fmnist(target, download=True, val_fraction=0), seed=0)
    assert len(splits.train) == 60000 and len(splits.test) == 10000
    assert sorted(p.name for p in target.iterdir()) == sorted(p.name for p in (root / "files").iterdir())
    # A second build finds the files and downloads nothing.
    for path in (root / "files").iterdir():
        path.unlink()
    assert len(build_datasets(fmnist(target, download=True), seed=0).test) == 10000


def test_download_rejects_wrong_files_and_writes_nothing(http_root, tmp_path: Path) -> None:
    root, url = http_root
    write_fashion_mnist(root / "files", n_train=20)
    with pytest.raises(DatasetError, match=r"has shape \(20, 28, 28\), expected \(60000, 28, 28\)"):
        data.download_fashion_mnist(tmp_path / "dl", base_url=url)
    assert not (tmp_path / "dl").exists() or not any((tmp_path / "dl").iterdir())
    (root / "files" / "train-images-idx3-ubyte.gz").write_bytes(b"<html>not found</html>")
    with pytest.raises(DatasetError, match="downloaded from .* is not a valid gzip file"):
        data.download_fashion_mnist(tmp_path / "dl", base_url=url)


def test_download_http_error(http_root, tmp_path: Path) -> None:
    _, url = http_root
    with pytest.raises(
        DatasetError, match=r"could not download Fashion-MNIST from .*train-images-idx3-ubyte\.gz"
    ):
        data.download_fashion_mnist(tmp_path / "dl", base_url=url)


def test_download_offline_is_a_clear_error(no_default_dirs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("FASHION_MNIST_URL", f"http://127.0.0.1:{port}/")
    with pytest.raises(DatasetError, match="could not download .*apt-get install dataset-fashion-mnist"):
        build_datasets(DataConfig(download=True), seed=0)
    assert not (no_default_dirs / "home" / ".cache" / "bitat-edge" / "fashion-mnist").exists()


# --------------------------------------------------------------------------- real Fashion-MNIST


@pytest.mark.skipif(not REAL_FASHION_MNIST.is_dir(), reason="needs `apt-get install dataset-fashion-mnist`")
def test_real_fashion_mnist() -> None:
    cfg = DataConfig(data_dir=str(REAL_FASHION_MNIST))
    splits = build_datasets(cfg, seed=0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (54000, 6000, 10000)
    train_idx, val_idx = splits.train.indices, splits.val.indices
    assert len(np.intersect1d(train_idx, val_idx)) == 0
    assert len(np.union1d(train_idx, val_idx)) == 60000
    assert np.array_equal(splits.calibration.indices, train_idx)
    again = build_datasets(cfg, seed=0)
    assert np.array_equal(again.val.indices, val_idx)
    assert not np.array_equal(build_datasets(cfg, seed=1).val.indices, val_idx)
    labels = splits.train.labels
    assert labels.min() == 0 and labels.max() == 9
    assert torch.bincount(splits.test.labels).tolist() == [1000] * 10
    batch = torch.stack([splits.test[i][0] for i in range(0, 10000, 10)])
    assert abs(float(batch.mean())) < 0.05 and abs(float(batch.std()) - 1) < 0.05
    assert len(build_datasets(cfg.model_copy(update={"eval_limit": 100}), seed=0).test) == 100


# --------------------------------------------------------------------------- augmentation


def test_augmentation_is_a_function_of_seed_epoch_index(tmp_path: Path) -> None:
    folder = tmp_path / "fm"
    write_fashion_mnist(folder, n_train=40)
    # Non-constant images so that crops and flips show.
    images = np.random.default_rng(0).integers(0, 256, (40, 28, 28), dtype=np.uint8)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
    splits = build_datasets(fmnist(folder, val_fraction=0), seed=3)
    train = splits.train
    first = [train[i][0] for i in range(len(train))]
    assert all(torch.equal(train[i][0], first[i]) for i in range(len(train)))
    assert torch.equal(build_datasets(fmnist(folder, val_fraction=0), seed=3).train[5][0], first[5])
    assert not torch.equal(build_datasets(fmnist(folder, val_fraction=0), seed=4).train[5][0], first[5])
    assert sum(not torch.equal(first[i], splits.calibration[i][0]) for i in range(len(train))) > 30
    train.set_epoch(1)
    second = [train[i][0] for i in range(len(train))]
    assert sum(not torch.equal(a, b) for a, b in zip(first, second, strict=True)) > 30
    train.set_epoch(0)
    # Order of access and worker processes do not matter.
    assert all(torch.equal(train[i][0], first[i]) for i in reversed(range(len(train))))
    loader = DataLoader(train, batch_size=8, num_workers=2)
    assert torch.equal(torch.cat([x for x, _ in loader]), torch.stack(first))
    # Eval views are never augmented.
    plain = (torch.from_numpy(images[5]).float() / 255 - 0.2860) / 0.3530
    assert torch.allclose(splits.calibration[5][0][0], plain)
    no_aug = build_datasets(fmnist(folder, val_fraction=0, augment=False), seed=3)
    assert torch.equal(no_aug.train[5][0], splits.calibration[5][0])


# --------------------------------------------------------------------------- CIFAR


def _pickle(path: Path, obj: object) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=2))


def write_cifar10(parent: Path, per_batch: int = 4, n_test: int = 6) -> Path:
    root = parent / "cifar-10-batches-py"
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(1, 6):
        _pickle(root / f"data_batch_{k}", {
            b"batch_label": b"training batch", b"labels": [(k + i) % 10 for i in range(per_batch)],
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"filenames": [b"x.png"] * per_batch,
        })  # fmt: skip
    data_test = np.zeros((n_test, 3072), dtype=np.uint8)
    data_test[:, :1024] = 255  # red images
    _pickle(root / "test_batch", {b"labels": list(range(n_test)), b"data": data_test})
    _pickle(root / "batches.meta", {b"label_names": [f"c{k}".encode() for k in range(10)], b"num_vis": 3072})
    return root


def write_cifar100(parent: Path, n_train: int = 12, n_test: int = 5) -> Path:
    root = parent / "cifar-100-python"
    root.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name, n in (("train", n_train), ("test", n_test)):
        _pickle(root / name, {
            b"fine_labels": [(7 * i) % 100 for i in range(n)], b"coarse_labels": [0] * n,
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        })  # fmt: skip
    _pickle(root / "meta", {b"fine_label_names": [f"f{k}".encode() for k in range(100)]})
    return root


def test_cifar10_folder_or_parent(
    tmp_path: Path, no_default_dirs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_cifar10(tmp_path / "data")
    for given in (folder, tmp_path / "data"):
        splits = build_datasets(DataConfig(name="cifar10", data_dir=str(given), val_fraction=0.2), seed=0)
        assert (len(splits.train), len(splits.val), len(splits.test)) == (16, 4, 6)
        assert splits.info.classes == [f"c{k}" for k in range(10)] and splits.info.in_channels == 3
        image, label = splits.test[2]
        assert image.shape == (3, 32, 32) and label == 2
        mean, std = splits.info.mean, splits.info.std
        assert torch.allclose(
            image[:, 0, 0], torch.tensor([(1 - mean[0]) / std[0], -mean[1] / std[1], -mean[2] / std[2]])
        )
    monkeypatch.setenv("CIFAR_DIR", str(tmp_path / "data"))
    assert len(build_datasets(DataConfig(name="cifar10"), seed=0).test) == 6


def test_cifar100(tmp_path: Path) -> None:
    write_cifar100(tmp_path)
    splits = build_datasets(DataConfig(name="cifar100", data_dir=str(tmp_path), val_fraction=0.25), seed=0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (9, 3, 5)
    assert splits.info.num_classes == 100 and splits.info.classes[99] == "f99"
    assert splits.test[3][1] == 21 and splits.train[0][0].shape == (3, 32, 32)


def test_cifar_missing(no_default_dirs: Path) -> None:
    with pytest.raises(DatasetError, match="neither --data-dir nor CIFAR_DIR is set.*cs.toronto.edu"):
        build_datasets(DataConfig(name="cifar10"), seed=0)
    given = no_default_dirs / "nope"
    with pytest.raises(DatasetError, match=f"{given}, {given / 'cifar-100-python'}"):
        build_datasets(DataConfig(name="cifar100", data_dir=str(given)), seed=0)


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (
            {b"labels": [0, 1], b"data": np.zeros((2, 100), dtype=np.uint8)},
            r"shape \(N, 3072\), got \(2, 100\)",
        ),
        ({b"labels": [0], b"data": np.zeros((2, 3072), dtype=np.uint8)}, "labels has 1 entries for 2 images"),
        ({b"labels": [0, 10], b"data": np.zeros((2, 3072), dtype=np.uint8)}, r"labels outside 0\.\.9"),
        ([1, 2, 3], "holds a list, expected a CIFAR dict"),
        ({b"labels": [b"a", b"b"], b"data": np.zeros((2, 3072), dtype=np.uint8)}, "labels are not integers"),
    ],
)
def test_cifar_corrupt_batches(tmp_path: Path, batch: object, message: str) -> None:
    root = write_cifar10(tmp_path)
    _pickle(root / "data_batch_3", batch)
    with pytest.raises(DatasetError, match=message):
        build_datasets(DataConfig(name="cifar10", data_dir=str(root)), seed=0)


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_cifar_pickle_cannot_run_code(tmp_path: Path) -> None:
    root = write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    _pickle(root / "test_batch", {b"labels": [], b"data": _Exploit(marker)})
    with pytest.raises(DatasetError, match="refusing to load posix.mkdir"):
        build_datasets(DataConfig(name="cifar10", data_dir=str(root)), seed=0)
    assert not marker.exists()
    (root / "data_batch_1").write_bytes(b"\x80\x02}q\x00(X")  # truncated pickle
    with pytest.raises(DatasetError, match="data_batch_1 is not a readable CIFAR pickle"):
        build_datasets(DataConfig(name="cifar10", data_dir=str(root)), seed=0)


# --------------------------------------------------------------------------- ImageFolder


def write_image_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, per_class in (("train", 4), ("val", 2)):
        for k, cls in enumerate(["cat", "dog", "eel"]):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(per_class):
                size = (40 + 4 * i, 30 + 6 * k)
                array = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(array).save(folder / f"img{i}.png")
    Image.fromarray(np.zeros((20, 20), dtype=np.uint8), "L").save(root / "val" / "eel" / "gray.png")
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    return root


def test_image_folder(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path)
    cfg = DataConfig(name="imagefolder", data_dir=str(root), image_size=16, val_fraction=0.25)
    splits = build_datasets(cfg, seed=0)
    assert splits.info.classes == ["cat", "dog", "eel"] and splits.info.num_classes == 3
    assert splits.info.image_size == 16 and splits.info.mean == [0.485, 0.456, 0.406]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (9, 3, 7)
    labels = [splits.test[i][1] for i in range(len(splits.test))]
    assert labels == [0, 0, 1, 1, 2, 2, 2]
    for dataset in (splits.train, splits.val, splits.test, splits.calibration):
        image, _ = dataset[len(dataset) - 1]
        assert image.shape == (3, 16, 16) and image.dtype == torch.float32
    assert torch.equal(splits.train[0][0], splits.train[0][0])
    assert torch.equal(splits.test[6][0], splits.test[6][0])
    before = splits.train[1][0]
    splits.train.set_epoch(1)
    assert not torch.equal(splits.train[1][0], before)
    assert not torch.equal(splits.calibration[1][0], before)
    assert DataConfig(name="imagefolder", data_dir=str(root)).image_size is None
    assert build_datasets(DataConfig(name="imagefolder", data_dir=str(root)), seed=0).test[0][0].shape == (
        3,
        224,
        224,
    )


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="needs data.data_dir"):
        build_datasets(DataConfig(name="imagefolder"), seed=0)
    with pytest.raises(DatasetError, match="train does not exist; arrange the data as"):
        build_datasets(DataConfig(name="imagefolder", data_dir=str(tmp_path)), seed=0)
    root = write_image_folder(tmp_path / "ds")
    cfg = DataConfig(name="imagefolder", data_dir=str(root), image_size=16)
    (root / "train" / "fox").mkdir()
    with pytest.raises(DatasetError, match="class folder .*fox holds no images"):
        build_datasets(cfg, seed=0)
    (root / "train" / "fox").rmdir()
    (root / "val" / "owl").mkdir()
    with pytest.raises(DatasetError, match="class folders not in the training set: owl"):
        build_datasets(cfg, seed=0)
    (root / "val" / "owl").rmdir()
    (root / "val" / "cat" / "img0.png").write_bytes(b"garbage")
    splits = build_datasets(cfg, seed=0)
    with pytest.raises(DatasetError, match="cannot decode image .*img0.png"):
        splits.test[0]


# --------------------------------------------------------------------------- synthetic


def test_synthetic_sizes_and_determinism() -> None:
    cfg = DataConfig(name="synthetic", synthetic_train=40, synthetic_test=12, synthetic_classes=4,
                     synthetic_channels=3, image_size=12, val_fraction=0.25, eval_limit=10)  # fmt: skip
    splits = build_datasets(cfg, seed=0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (30, 10, 10)
    assert splits.info.num_classes == 4 and splits.info.in_channels == 3 and splits.info.image_size == 12
    assert splits.train[0][0].shape == (3, 12, 12)
    other = build_datasets(cfg, seed=1)
    assert torch.equal(other.test[4][0], splits.test[4][0])  # the data does not depend on the run seed
    assert sorted(splits.test[i][1] for i in range(10)) == sorted(other.test[i][1] for i in range(10))
    eval_batch = torch.stack([splits.calibration[i][0] for i in range(30)])
    assert abs(float(eval_batch.mean())) < 0.2
    assert len(build_datasets(cfg.model_copy(update={"val_fraction": 0.0}), seed=0).val) == 10  # val is test


@pytest.fixture
def one_thread():
    """Tiny tensors: one intra-op thread is fastest and immune to a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_synthetic_is_learnable_by_the_tiny_net(one_thread: None) -> None:
    torch.manual_seed(0)
    splits = build_datasets(DataConfig(name="synthetic", image_size=16, val_fraction=0), seed=0)
    model = build_model("tiny", num_classes=10, in_channels=1, image_size=16)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loader = DataLoader(splits.train, batch_size=32, shuffle=True)
    for epoch in range(6):
        splits.train.set_epoch(epoch)
        for x, y in loader:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        x, y = next(iter(DataLoader(splits.test, batch_size=128)))
        accuracy = float((model(x).argmax(1) == y).float().mean())
    assert accuracy > 0.9  # chance: 0.1
