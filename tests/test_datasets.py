"""Real-data tasks against independent references: `digits` against
scikit-learn's own arrays, `image-files` against IDX and .npz files these
tests write byte by byte from the format's documentation (big-endian int32
magic 0x00000803 / 0x00000801, int32 dimension sizes, unsigned-byte payload).
Class counts are checked against largest-remainder arithmetic done by hand
in the comments, and bad files against the one-line refusal contract."""

from __future__ import annotations

import gzip
import sqlite3
import struct
from pathlib import Path

import numpy as np
import pytest
import sklearn.datasets
import torch

from learnscope.cli import main
from learnscope.errors import SpecError
from learnscope.runner import run_experiment
from learnscope.spec import Experiment
from learnscope.tasks.digits import Digits
from learnscope.tasks.image_files import ImageFiles

IDX_NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
TINY_RECIPE = {"optimizer": "sgd", "lr": 0.1, "steps": 8, "probe_every": 4, "probe_log_points": 0}


def one_line_refusal(raw_task: dict) -> str:
    """The SpecError that validating an experiment with this task raises."""
    with pytest.raises(SpecError) as caught:
        Experiment.model_validate({"task": raw_task, "model": {"name": "mlp", "hidden": [8]}})
    message = str(caught.value)
    assert len(message.splitlines()) == 1, message
    return message


def class_counts(targets: torch.Tensor, classes: int) -> list[int]:
    return np.bincount(targets.numpy(), minlength=classes).tolist()


# ---------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def sk_digits():
    digits = sklearn.datasets.load_digits()
    return digits.data, digits.target


def test_digits_rows_are_sklearns_pixels_over_16(sk_digits):
    x, y = sk_digits
    data = Digits().build(seed=3)
    assert Digits().info().input_shape == (64,) and Digits().info().output_dim == 10
    np.testing.assert_array_equal(data.inputs.numpy(), (x / 16).astype(np.float32))
    np.testing.assert_array_equal(data.targets.numpy(), y)
    assert data.inputs.min() == 0 and data.inputs.max() == 1


@pytest.mark.parametrize("test_fraction", [0.25, 0.3])
def test_digits_partition_is_stratified_with_the_same_counts_every_seed(sk_digits, test_fraction):
    _, y = sk_digits
    n_c = np.bincount(y)
    task = Digits(test_fraction=test_fraction)
    builds = {seed: task.build(seed) for seed in (0, 1, 2)}
    counts = set()
    for data in builds.values():
        train, test = data.splits["train"], data.splits["test"]
        assert sorted(torch.cat([train, test]).tolist()) == list(range(1797))  # a partition of every example
        assert len(train) == round(1797 * (1 - test_fraction))
        train_counts = np.bincount(y[train.numpy()], minlength=10)
        assert np.all(np.abs(train_counts - n_c * (1 - test_fraction)) < 1), train_counts
        counts.add(tuple(train_counts))
    assert len(counts) == 1  # exact per-class counts, identical across seeds
    assert not torch.equal(builds[0].splits["train"].sort().values, builds[1].splits["train"].sort().values)
    assert torch.equal(task.build(1).splits["train"], builds[1].splits["train"])


def test_digits_standard_scaling_uses_train_statistics(sk_digits):
    x, _ = sk_digits
    data = Digits(scale="standard").build(seed=5)
    train, test = data.splits["train"].numpy(), data.splits["test"].numpy()
    mean, std = x[train].mean(0), x[train].std(0)
    std_safe = np.where(std > 0, std, 1.0)
    np.testing.assert_allclose(data.inputs.numpy(), (x - mean) / std_safe, rtol=1e-5, atol=1e-5)
    z = data.inputs.double().numpy()[train]
    varying = std > 0
    assert (~varying).sum() >= 3  # the always-blank pixels: only centred
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(z[:, varying].std(0), 1, atol=1e-5)
    assert abs(data.inputs.double().numpy()[test].mean()) > 1e-4  # test rows: the train split's statistics


def test_digits_refuses_a_fraction_that_empties_a_split():
    assert one_line_refusal({"name": "digits", "test_fraction": 1.0}).startswith("task.test_fraction: ")
    message = one_line_refusal({"name": "digits", "test_fraction": 1e-4})
    assert message.startswith("task.test_fraction: ") and "both splits must be non-empty" in message


# ---------------------------------------------------------------- image files: writing them


def idx_bytes(array: np.ndarray) -> bytes:
    magic = {3: 0x00000803, 1: 0x00000801}[array.ndim]
    return struct.pack(">i", magic) + struct.pack(f">{array.ndim}i", *array.shape) + array.astype(np.uint8).tobytes()


def shuffled_labels(counts: list[int], rng) -> np.ndarray:
    return rng.permutation(np.repeat(np.arange(len(counts)), counts)).astype(np.uint8)


@pytest.fixture(scope="module")
def arrays():
    """30 train and 12 test random 5x4 images; train classes 14/10/6, test 6/4/2."""
    rng = np.random.default_rng(1234)
    return {
        "x_train": rng.integers(0, 256, (30, 5, 4), dtype=np.uint8),
        "y_train": shuffled_labels([14, 10, 6], rng),
        "x_test": rng.integers(0, 256, (12, 5, 4), dtype=np.uint8),
        "y_test": shuffled_labels([6, 4, 2], rng),
    }


def write_idx(directory: Path, arrays: dict, gz: bool = False) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, key in zip(IDX_NAMES, ["x_train", "y_train", "x_test", "y_test"]):
        payload = idx_bytes(arrays[key])
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(payload))
        else:
            (directory / name).write_bytes(payload)
    return directory


def expected_inputs(arrays: dict) -> np.ndarray:
    flat = [arrays[k].reshape(len(arrays[k]), -1) for k in ("x_train", "x_test")]
    return np.concatenate(flat).astype(np.float32) / np.float32(255)


# ---------------------------------------------------------------- image files: loading


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_idx_files_load_as_written(tmp_path, arrays, gz):
    task = ImageFiles(path=str(write_idx(tmp_path / "mnist", arrays, gz)))
    info = task.info()
    assert (info.input_kind, info.input_shape, info.output_dim, info.splits) == ("vector", (20,), 3, ("train", "test"))
    data = task.build(seed=0)
    np.testing.assert_array_equal(data.inputs.numpy(), expected_inputs(arrays))
    np.testing.assert_array_equal(data.targets.numpy(), np.concatenate([arrays["y_train"], arrays["y_test"]]))
    assert sorted(data.splits["train"].tolist()) == list(range(30))
    assert sorted(data.splits["test"].tolist()) == list(range(30, 42))


def test_npz_loads_as_written_with_keras_column_labels(tmp_path, arrays):
    path = tmp_path / "data.npz"
    np.savez(path, **{**arrays, "y_test": arrays["y_test"].reshape(-1, 1)})  # Keras's CIFAR keeps labels [N, 1]
    data = ImageFiles(path=str(path)).build(seed=0)
    np.testing.assert_array_equal(data.inputs.numpy(), expected_inputs(arrays))
    np.testing.assert_array_equal(data.targets.numpy(), np.concatenate([arrays["y_train"], arrays["y_test"]]))


def test_path_is_stored_resolved(tmp_path, arrays, monkeypatch):
    write_idx(tmp_path / "mnist", arrays)
    monkeypatch.chdir(tmp_path)
    assert ImageFiles(path="mnist").path == str((tmp_path / "mnist").resolve())


def test_subsamples_are_stratified_exact_and_drawn_per_seed(tmp_path, arrays):
    task = ImageFiles(path=str(write_idx(tmp_path / "mnist", arrays)), train_samples=16, test_samples=7)
    # largest remainder by hand: train 16 * (14, 10, 6) / 30 = 7.47, 5.33, 3.2 -> 7, 5, 3 + 1 to class 0;
    # test 7 * (6, 4, 2) / 12 = 3.5, 2.33, 1.17 -> 3, 2, 1 + 1 to class 0
    want = {"train": [8, 5, 3], "test": [4, 2, 1]}
    rows = {split: {arrays[f"x_{split}"][i].tobytes(): int(arrays[f"y_{split}"][i])
                    for i in range(len(arrays[f"y_{split}"]))} for split in ("train", "test")}
    chosen = {}
    for seed in range(4):
        data = task.build(seed)
        pixels = np.rint(data.inputs.numpy() * 255).astype(np.uint8).reshape(-1, 5, 4)
        for split in ("train", "test"):
            index = data.splits[split].numpy()
            assert class_counts(data.targets[index], 3) == want[split]
            keys = [pixels[i].tobytes() for i in index]
            assert len(set(keys)) == len(keys)  # without replacement
            assert all(rows[split][k] == int(data.targets[i]) for k, i in zip(keys, index))  # a row of that file
            chosen[seed, split] = sorted(keys)
    assert chosen[0, "train"] != chosen[1, "train"] and chosen[0, "test"] != chosen[1, "test"]
    again = task.build(0)
    assert torch.equal(again.inputs, task.build(0).inputs)


def test_seeds_share_one_load_and_a_rewritten_file_is_read_again(tmp_path, arrays):
    directory = write_idx(tmp_path / "mnist", arrays)
    task = ImageFiles(path=str(directory))
    assert task.build(0).inputs is task.build(1).inputs  # read once, shared by every seed
    changed = {**arrays, "x_train": 255 - arrays["x_train"]}
    (directory / IDX_NAMES[0]).write_bytes(idx_bytes(changed["x_train"]))
    np.testing.assert_array_equal(task.build(0).inputs.numpy(), expected_inputs(changed))


# ---------------------------------------------------------------- image files: bad files


def test_missing_path_and_missing_file_are_named(tmp_path, arrays):
    message = one_line_refusal({"name": "image-files", "path": str(tmp_path / "nowhere")})
    assert message.startswith("task.path: ") and "does not exist" in message and ".npz" in message
    directory = write_idx(tmp_path / "mnist", arrays)
    (directory / "t10k-labels-idx1-ubyte").unlink()
    message = one_line_refusal({"name": "image-files", "path": str(directory)})
    assert message.startswith("task.path: ") and "no t10k-labels-idx1-ubyte" in message
    assert all(name in message for name in IDX_NAMES)
    (tmp_path / "notes.txt").write_text("x")
    message = one_line_refusal({"name": "image-files", "path": str(tmp_path / "notes.txt")})
    assert message.startswith("task.path: ") and "neither a directory nor a .npz" in message


@pytest.mark.parametrize(
    "damage,fragments",
    [
        ("wrong_magic", ["train-images-idx3-ubyte", "magic number 0x00000801", "expected 0x00000803"]),
        ("truncated", ["t10k-images-idx3-ubyte", "truncated", "239 bytes, expected 240"]),
        ("too_few_labels", ["train-images-idx3-ubyte holds 30 images", "29 labels"]),
        ("test_image_shape", ["images of shape (5, 4)", "(4, 5)"]),
    ],
)
def test_bad_idx_files_are_refused_at_validation(tmp_path, arrays, damage, fragments):
    directory = write_idx(tmp_path / "mnist", arrays)
    if damage == "wrong_magic":  # a labels file where the images belong
        (directory / IDX_NAMES[0]).write_bytes(idx_bytes(arrays["y_train"]))
    elif damage == "truncated":
        (directory / IDX_NAMES[2]).write_bytes(idx_bytes(arrays["x_test"])[:-1])
    elif damage == "too_few_labels":
        (directory / IDX_NAMES[1]).write_bytes(idx_bytes(arrays["y_train"][:29]))
    else:
        (directory / IDX_NAMES[2]).write_bytes(idx_bytes(arrays["x_test"].reshape(12, 4, 5)))
    message = one_line_refusal({"name": "image-files", "path": str(directory)})
    assert message.startswith("task.path: ")
    assert all(f in message for f in fragments), message


def test_truncated_gzip_payload_is_refused_when_loading(tmp_path, arrays):
    directory = write_idx(tmp_path / "mnist", arrays, gz=True)
    short = gzip.compress(idx_bytes(arrays["x_train"])[:-7])  # a whole gzip stream, short payload
    (directory / f"{IDX_NAMES[0]}.gz").write_bytes(short)
    with pytest.raises(SpecError) as caught:
        ImageFiles(path=str(directory)).build(0)
    message = str(caught.value)
    assert message.startswith("task.path: ") and len(message.splitlines()) == 1
    assert "train-images-idx3-ubyte.gz: payload truncated: 593 bytes, expected 600" in message
    cut = gzip.compress(idx_bytes(arrays["x_test"]))[:-20]  # the gzip stream itself cut short
    (directory / f"{IDX_NAMES[0]}.gz").write_bytes(gzip.compress(idx_bytes(arrays["x_train"])))
    (directory / f"{IDX_NAMES[2]}.gz").write_bytes(cut)
    with pytest.raises(SpecError, match=r"^task\.path: t10k-images-idx3-ubyte\.gz: truncated"):
        ImageFiles(path=str(directory)).build(0)


def test_bad_npz_files_are_refused(tmp_path, arrays):
    missing = tmp_path / "missing.npz"
    np.savez(missing, **{k: v for k, v in arrays.items() if k != "y_test"})
    message = one_line_refusal({"name": "image-files", "path": str(missing)})
    assert message.startswith("task.path: ") and "no array 'y_test'" in message
    negative = tmp_path / "negative.npz"
    np.savez(negative, **{**arrays, "y_train": arrays["y_train"].astype(np.int64) - 1})
    with pytest.raises(SpecError, match=r"^task\.path: labels out of range: found -1"):
        ImageFiles(path=str(negative)).info()
    counts = tmp_path / "counts.npz"
    np.savez(counts, **{**arrays, "y_test": arrays["y_test"][:11]})
    message = one_line_refusal({"name": "image-files", "path": str(counts)})
    assert "x_test holds 12 images but y_test 11 labels" in message
    (tmp_path / "torn.npz").write_bytes(missing.read_bytes()[:100])
    assert "not a readable .npz" in one_line_refusal({"name": "image-files", "path": str(tmp_path / "torn.npz")})


def test_sizes_and_classes_beyond_the_files_are_refused(tmp_path, arrays):
    path = str(write_idx(tmp_path / "mnist", arrays))
    message = one_line_refusal({"name": "image-files", "path": path, "train_samples": 31})
    assert message.startswith("task.train_samples: ") and "at most 30" in message
    with pytest.raises(SpecError, match=r"^task\.classes: the labels go up to 2; must be at least 3"):
        ImageFiles(path=path, classes=2).info()
    assert ImageFiles(path=path, classes=5).info().output_dim == 5


# ---------------------------------------------------------------- end to end


def test_digits_trains_end_to_end(tmp_path):
    experiment = Experiment.model_validate({
        "task": {"name": "digits", "scale": "standard"}, "model": {"name": "mlp", "hidden": [32]},
        "recipe": TINY_RECIPE, "probes": ["accuracy"], "seeds": 2,
    })
    run = run_experiment(experiment, store=tmp_path / "store")
    assert run.status == "finished"
    final = run.metrics.query("name == 'accuracy/train'").sort_values("step").groupby("seed")["value"].last()
    assert len(final) == 2 and (final > 0.2).all()  # twice chance after 8 steps (measured 0.41, 0.51)


def test_image_files_run_through_the_command_line(tmp_path, arrays, capsys):
    path = write_idx(tmp_path / "mnist", arrays, gz=True)
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"task: {{name: image-files, path: '{path}', train_samples: 24}}\n"
                    f"model: {{name: mlp, hidden: [32]}}\nrecipe: {TINY_RECIPE}\nprobes: [accuracy]\nseeds: 2\n")
    assert main(["run", str(spec), "--store", str(tmp_path / "store"), "--no-report"]) == 0
    capsys.readouterr()
    # a bad path: exit 2, one line on stderr, no traceback, nothing recorded
    store = tmp_path / "store2"
    code = main(["run", str(spec), "--set", f"task.path={tmp_path / 'nowhere'}", "--store", str(store), "--no-report"])
    out, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in out + err
    assert len(err.splitlines()) == 1 and err.startswith("error: task.path: ") and "does not exist" in err
    # a file found bad only when loading: refused the same way, before the run is recorded
    (path / f"{IDX_NAMES[3]}.gz").write_bytes(gzip.compress(idx_bytes(arrays["y_test"])[:-1]))
    code = main(["run", str(spec), "--store", str(store), "--no-report"])
    out, err = capsys.readouterr()
    assert code == 2 and len(err.splitlines()) == 1 and "payload truncated" in err, err
    if (store / "runs.db").exists():
        with sqlite3.connect(store / "runs.db") as conn:
            assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
