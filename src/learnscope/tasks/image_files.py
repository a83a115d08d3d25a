"""MNIST, Fashion-MNIST or any image classification data in their formats,
read from local files the spec names (never downloaded). `path` is either

- a directory holding the four IDX files under their standard names
  (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
  `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`), each optionally
  gzipped (`.gz`; a plain file is preferred when both exist); IDX is a
  big-endian int32 magic number (0x00000803: unsigned-byte images in 3
  dimensions, 0x00000801: unsigned-byte labels in 1), one big-endian int32
  per dimension size, then the payload in row-major order;
- or a `.npz` file with arrays `x_train`, `y_train`, `x_test`, `y_test` (the
  Keras layout: images [N, ...], labels [N] or [N, 1]).

Images are flattened to vectors (the models take vectors). Integer pixels
must lie in 0..255 and are divided by 255, into [0, 1]; float pixels are
taken as they are. The classes are max label + 1 over both files unless
`classes` is given (a model with more outputs than the files' labels use).

`train_samples` and `test_samples` subsample each file's examples per seed,
stratified with exact class counts (in proportion to the file's, by largest
remainder: the same for every seed, so seeds stack), from independent
streams: changing one split's size leaves the other's draw as it was.

Problems with the files are bad input, refused in one line on `task.path`:
when the spec is validated for everything the headers show (a missing path
or file, a bad magic number, an uncompressed file of the wrong size, image
and label counts that disagree, an .npz missing an array or of the wrong
shapes or types), when the data is first loaded for the rest (a truncated
gzip payload, labels or pixels out of range). `path` is stored resolved, so
a run resumed from another directory reads the same files. Loaded data is
cached per process by the files' resolved paths, mtimes and sizes: the
seeds of an ensemble read the files once.
"""

from __future__ import annotations

import functools
import gzip
import math
import struct
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from pydantic import Field, field_validator

from learnscope import registry
from learnscope.errors import SpecError
from learnscope.seeding import generator
from learnscope.tasks.base import Dataset, Task, TaskInfo
from learnscope.tasks.sampling import stratified_choice

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test")
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801
_KIND = {IMAGES_MAGIC: "IDX images: unsigned bytes, 3 dimensions",
         LABELS_MAGIC: "IDX labels: unsigned bytes, 1 dimension"}
_EXPECTED = (f"expected a directory holding {', '.join(IDX_FILES)} (each optionally .gz) "
             f"or a .npz file with arrays {', '.join(NPZ_ARRAYS)}")


class BadFiles(ValueError):
    """What is wrong with the files. A ValueError, so that in a validator
    pydantic reports it on the field (with its full path when nested)."""


@dataclass(frozen=True)
class Layout:
    """What the headers say: the files to read and the four arrays' shapes."""

    files: tuple[Path, ...]  # four IDX files in IDX_FILES order, or one .npz
    shapes: dict[str, tuple[int, ...]]  # x_train, y_train, x_test, y_test

    def stamp(self) -> tuple[tuple[str, int, int], ...]:
        """Cache key: a file rewritten in place gets a new mtime or size."""
        return tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in self.files)


def layout(path: Path) -> Layout:
    """Check the files as far as their headers go, reading a few bytes of each."""
    if path.is_dir():
        return _idx_layout(path)
    if path.is_file() and path.suffix.lower() == ".npz":
        return _npz_layout(path)
    if path.exists():
        raise BadFiles(f"is neither a directory nor a .npz file; {_EXPECTED}")
    raise BadFiles(f"does not exist; {_EXPECTED}")


def _check_shapes(shapes: dict[str, tuple[int, ...]], names: tuple[str, ...]) -> None:
    """Images [N, ...] and labels [N] (or [N, 1]) whose counts agree, train and test images of one shape.
    `names` are what a message calls the four arrays (file names for IDX)."""
    x_train, y_train, x_test, y_test = (shapes[k] for k in NPZ_ARRAYS)
    for (x, y), (x_name, y_name) in (((x_train, y_train), names[:2]), ((x_test, y_test), names[2:])):
        if len(x) < 2 or math.prod(x[1:]) < 1:
            raise BadFiles(f"{x_name} has shape {x}; expected images [N, height, width, ...]")
        if not (len(y) == 1 or (len(y) == 2 and y[1] == 1)):
            raise BadFiles(f"{y_name} has shape {y}; expected labels [N]")
        if x[0] != y[0]:
            raise BadFiles(f"{x_name} holds {x[0]} images but {y_name} {y[0]} labels; the counts must agree")
        if x[0] == 0:
            raise BadFiles(f"{x_name} holds no images")
    if x_train[1:] != x_test[1:]:
        raise BadFiles(f"{names[0]} has images of shape {x_train[1:]} but {names[2]} {x_test[1:]}; they must agree")


# ---------------------------------------------------------------- IDX


def _idx_files(directory: Path) -> tuple[Path, ...]:
    files = []
    for name in IDX_FILES:
        found = [directory / n for n in (name, f"{name}.gz") if (directory / n).is_file()]
        if not found:
            raise BadFiles(f"the directory has no {name} (nor {name}.gz); "
                           f"expected {', '.join(IDX_FILES)}, each optionally gzipped (.gz)")
        files.append(found[0])
    return tuple(files)


@contextmanager
def _opened(file: Path) -> Iterator[BinaryIO]:
    """The file's bytes, decompressed if it ends in .gz; read errors as BadFiles."""
    try:
        with gzip.open(file, "rb") if file.suffix == ".gz" else open(file, "rb") as stream:
            yield stream
    except (OSError, EOFError, zlib.error) as exc:
        raise BadFiles(f"{file.name}: truncated or unreadable ({exc.__class__.__name__}: {exc})") from None


def _idx_header(stream: BinaryIO, file: Path, magic: int) -> tuple[int, ...]:
    """The dimension sizes, leaving the stream at the payload."""
    ndim = magic & 0xFF
    head = stream.read(4 + 4 * ndim)
    found = int.from_bytes(head[:4], "big") if len(head) >= 4 else None
    if found != magic:
        shown = "none (the file is shorter than 4 bytes)" if found is None else f"0x{found:08x}"
        raise BadFiles(f"{file.name}: magic number {shown}, expected 0x{magic:08x} ({_KIND[magic]})")
    if len(head) < 4 + 4 * ndim:
        raise BadFiles(f"{file.name}: header truncated; {_KIND[magic]} need {ndim} dimension sizes after the magic")
    return struct.unpack(f">{ndim}I", head[4:])


def _payload_error(file: Path, dims: tuple[int, ...], size: int) -> BadFiles:
    expected = math.prod(dims)
    return BadFiles(f"{file.name}: payload {'truncated' if size < expected else 'too long'}: {size} bytes, expected "
                    f"{expected} for dimensions {' x '.join(map(str, dims))}")


def _idx_layout(directory: Path) -> Layout:
    files = _idx_files(directory)
    shapes = {}
    for key, file, magic in zip(NPZ_ARRAYS, files, (IMAGES_MAGIC, LABELS_MAGIC) * 2):
        with _opened(file) as stream:
            dims = _idx_header(stream, file, magic)
        if file.suffix != ".gz":  # a gzipped payload's size is known only once decompressed, when loading
            payload = file.stat().st_size - 4 - 4 * len(dims)
            if payload != math.prod(dims):
                raise _payload_error(file, dims, payload)
        shapes[key] = dims
    _check_shapes(shapes, tuple(f.name for f in files))
    return Layout(files, shapes)


def _read_idx(file: Path, magic: int) -> np.ndarray:
    with _opened(file) as stream:
        dims = _idx_header(stream, file, magic)
        payload = stream.read()
    if len(payload) != math.prod(dims):
        raise _payload_error(file, dims, len(payload))
    return np.frombuffer(payload, np.uint8).reshape(dims)


# ---------------------------------------------------------------- npz


def _npy_header(archive: zipfile.ZipFile, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """An array's shape and dtype from its .npy header, without reading its data."""
    with archive.open(f"{key}.npy") as member:
        version = np.lib.format.read_magic(member)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(member)
    return tuple(shape), dtype


def _npz_layout(file: Path) -> Layout:
    shapes = {}
    try:
        with zipfile.ZipFile(file) as archive:
            members = {n.removesuffix(".npy") for n in archive.namelist()}
            for key in NPZ_ARRAYS:
                if key not in members:
                    raise BadFiles(f"has no array '{key}'; expected {', '.join(NPZ_ARRAYS)} (the Keras layout), "
                                   f"found {', '.join(sorted(members)) or 'none'}")
                shape, dtype = _npy_header(archive, key)
                labels = key.startswith("y")
                if dtype.kind not in ("ui" if labels else "uif"):
                    raise BadFiles(f"array '{key}' has dtype {dtype}; expected "
                                   f"{'integer class labels' if labels else 'integer or float pixels'}")
                shapes[key] = shape
    except BadFiles:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as exc:
        raise BadFiles(f"is not a readable .npz file ({exc.__class__.__name__}: {exc})") from None
    _check_shapes(shapes, NPZ_ARRAYS)
    return Layout((file,), shapes)


def _read_npz(file: Path) -> list[np.ndarray]:
    try:
        with np.load(file, allow_pickle=False) as archive:
            return [archive[key] for key in NPZ_ARRAYS]
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError, zlib.error) as exc:
        raise BadFiles(f"is not a readable .npz file ({exc.__class__.__name__}: {exc})") from None


# ---------------------------------------------------------------- loading


@dataclass(frozen=True)
class Loaded:
    """Every example, train file then test file; shared by the seeds, never modified in place."""

    inputs: torch.Tensor  # [N, features] float32 in [0, 1] for integer pixels
    targets: torch.Tensor  # [N] long
    n_train: int


@functools.lru_cache(maxsize=2)
def load(stamp: tuple[tuple[str, int, int], ...]) -> Loaded:
    files = [Path(f) for f, _, _ in stamp]
    if len(files) == 4:
        arrays = [_read_idx(f, magic) for f, magic in zip(files, (IMAGES_MAGIC, LABELS_MAGIC) * 2)]
        names = tuple(f.name for f in files)
    else:
        arrays = _read_npz(files[0])
        names = NPZ_ARRAYS
    _check_shapes({k: a.shape for k, a in zip(NPZ_ARRAYS, arrays)}, names)  # the files may have changed since
    x_train, y_train, x_test, y_test = arrays
    x = np.concatenate([x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)])
    y = np.concatenate([y_train.reshape(-1), y_test.reshape(-1)])
    if y.min() < 0:
        raise BadFiles(f"labels out of range: found {y.min()}; labels must be class indices 0, 1, 2, ...")
    inputs = torch.from_numpy(x).float()
    if x.dtype.kind in "ui":
        if x.min() < 0 or x.max() > 255:
            raise BadFiles(f"integer pixels range over {x.min()}..{x.max()}; expected 0..255")
        inputs /= 255
    elif not torch.isfinite(inputs).all():
        raise BadFiles("pixels include NaN or infinite values")
    return Loaded(inputs, torch.from_numpy(y.astype(np.int64)), len(x_train))


@registry.tasks.register("image-files")
class ImageFiles(Task):
    path: str = Field(description="a directory of the four IDX files (optionally .gz) or a .npz file (Keras layout)")
    train_samples: int | None = Field(None, ge=1, description="training examples drawn per seed, stratified; None: all")
    test_samples: int | None = Field(None, ge=1, description="test examples drawn per seed, stratified; None: all")
    classes: int | None = Field(None, ge=2, description="model outputs; None: the largest label + 1")

    @field_validator("path")
    @classmethod
    def _readable(cls, path: str) -> str:
        resolved = Path(path).expanduser().resolve()
        layout(resolved)
        return str(resolved)

    @field_validator("train_samples", "test_samples")
    @classmethod
    def _available(cls, samples, info):
        path = info.data.get("path")
        if samples is not None and path is not None:
            split = info.field_name.removesuffix("_samples")
            available = layout(Path(path)).shapes[f"x_{split}"][0]
            if samples > available:
                raise ValueError(f"exceeds the {available} {split} examples in the files; at most {available}")
        return samples

    def _loaded(self) -> tuple[Loaded, int]:
        """The data and the number of classes."""
        try:
            data = load(layout(Path(self.path)).stamp())
        except BadFiles as exc:
            raise SpecError("task.path", f"{exc} (got {self.path!r})") from None
        top = int(data.targets.max())
        if self.classes is not None and top >= self.classes:
            raise SpecError("task.classes", f"the labels go up to {top}; must be at least {top + 1} "
                            f"(got {self.classes})")
        classes = self.classes or top + 1
        if classes < 2:
            raise SpecError("task.path", f"every label is 0; a classifier needs at least two classes "
                            f"(got {self.path!r})")
        return data, classes

    def info(self) -> TaskInfo:
        data, classes = self._loaded()
        return TaskInfo("vector", (data.inputs.shape[1],), classes, "cross_entropy", ("train", "test"))

    def build(self, seed: int) -> Dataset:
        data, _ = self._loaded()
        n = data.n_train
        train = self._draw(data.targets[:n], self.train_samples, seed, "train")
        test = self._draw(data.targets[n:], self.test_samples, seed, "test") + n
        keep = torch.cat([train, test])
        if len(keep) == len(data.targets):  # every example: the one cached tensor serves all seeds, no copy
            return Dataset(data.inputs, data.targets, {"train": train, "test": test})
        return Dataset(data.inputs[keep], data.targets[keep],
                       {"train": torch.arange(len(train)), "test": torch.arange(len(train), len(keep))})

    @staticmethod
    def _draw(labels: torch.Tensor, samples: int | None, seed: int, split: str) -> torch.Tensor:
        chosen, _ = stratified_choice(labels, len(labels) if samples is None else samples,
                                      generator(seed, "data", split))
        return chosen
