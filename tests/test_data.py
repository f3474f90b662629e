"""Tests of jaxstab.data: the built-in data sets, the checks on user arrays."""

from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import special

from jaxstab import data
from jaxstab.data import (
    DATASETS,
    Dataset,
    from_arrays,
    gaussian_mixture,
    get_dataset,
    load_digits,
    load_npz,
    teacher_mlp,
)

# Small sizes keep the synthetic tests fast; the defaults are checked once each.
SMALL: dict[str, Any] = {"n_train": 300, "n_test": 100, "d_in": 8, "num_classes": 4}


def assert_datasets_equal(a: Dataset, b: Dataset) -> None:
    for field in ("x_train", "y_train", "x_test", "y_test"):
        x, y = getattr(a, field), getattr(b, field)
        assert x.dtype == y.dtype, field
        np.testing.assert_array_equal(x, y, err_msg=field)
    assert a.num_classes == b.num_classes
    assert a.name == b.name


def assert_well_formed(ds: Dataset, n_train: int, n_test: int, d_in: int, k: int) -> None:
    assert ds.x_train.shape == (n_train, d_in)
    assert ds.x_test.shape == (n_test, d_in)
    assert ds.y_train.shape == (n_train,)
    assert ds.y_test.shape == (n_test,)
    assert ds.x_train.dtype == np.float32 and ds.x_test.dtype == np.float32
    assert ds.y_train.dtype == np.int32 and ds.y_test.dtype == np.int32
    assert ds.num_classes == ds.d_out == k
    assert ds.d_in == d_in
    assert np.isfinite(ds.x_train).all() and np.isfinite(ds.x_test).all()
    for y in (ds.y_train, ds.y_test):
        assert y.min() >= 0 and y.max() < k


def nearest_mean_accuracy(ds: Dataset) -> float:
    means = np.stack([ds.x_train[ds.y_train == c].mean(0) for c in range(ds.num_classes)])
    dist = ((ds.x_test[:, None, :] - means[None]) ** 2).sum(-1)
    return float((dist.argmin(1) == ds.y_test).mean())


# --------------------------------------------------------------------------- #
# Digits.
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_digits()


def test_digits_shapes_and_labels(digits: Dataset) -> None:
    assert digits.name == "digits"
    assert digits.x_train.shape[0] + digits.x_test.shape[0] == 1797
    assert digits.x_test.shape[0] == math.ceil(0.25 * 1797)
    assert_well_formed(digits, 1797 - 450, 450, 64, 10)
    np.testing.assert_array_equal(np.unique(digits.y_train), np.arange(10))
    np.testing.assert_array_equal(np.unique(digits.y_test), np.arange(10))


def test_digits_standardized_with_train_statistics(digits: Dataset) -> None:
    mean = digits.x_train.astype(np.float64).mean(0)
    std = digits.x_train.astype(np.float64).std(0)
    np.testing.assert_allclose(mean, 0.0, atol=1e-5)
    constant = std < 0.5
    # Some border pixels are always 0; they stay 0, the others have unit std.
    assert 0 < constant.sum() < 64
    np.testing.assert_allclose(std[~constant], 1.0, atol=1e-5)
    np.testing.assert_array_equal(digits.x_train[:, constant], 0.0)
    # The test set is scaled with the train statistics, so it is close to, not
    # exactly, standardized.
    test_mean = digits.x_test[:, ~constant].mean(0)
    assert np.abs(test_mean).max() < 1.0
    assert not np.allclose(test_mean, 0.0, atol=1e-5)


def test_digits_matches_scikit_learn_reference(digits: Dataset) -> None:
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    raw = sk_load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        raw.data, raw.target, test_size=450, random_state=0, stratify=raw.target
    )
    # StandardScaler also leaves zero-variance features unscaled (scale 1).
    scaler = StandardScaler().fit(x_train)
    np.testing.assert_allclose(digits.x_train, scaler.transform(x_train), atol=1e-5)
    np.testing.assert_allclose(digits.x_test, scaler.transform(x_test), atol=1e-5)
    np.testing.assert_array_equal(digits.y_train, y_train)
    np.testing.assert_array_equal(digits.y_test, y_test)


def test_digits_deterministic_and_seeded() -> None:
    a, b, c = load_digits(seed=3), load_digits(seed=3), load_digits(seed=4)
    assert_datasets_equal(a, b)
    assert a.y_test.shape == c.y_test.shape
    assert not np.array_equal(a.x_test, c.x_test)
    assert not np.array_equal(a.y_train, c.y_train)


def test_digits_cache_gives_the_same_split_without_scikit_learn(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("JAXSTAB_DATA_CACHE", "0")
    fresh = load_digits(seed=5)
    monkeypatch.setenv("JAXSTAB_DATA_CACHE", "1")
    first = load_digits(seed=5)  # splits with scikit-learn and writes the cache
    (cached,) = (tmp_path / "jaxstab" / "data").glob("digits-0.25-5-*.npz")
    for module in ("sklearn", "sklearn.datasets", "sklearn.model_selection"):
        monkeypatch.setitem(sys.modules, module, None)  # an import would now fail
    assert_datasets_equal(load_digits(seed=5), fresh)
    assert_datasets_equal(first, fresh)
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cached.write_bytes(b"not an npz")  # a damaged cache is split again and rewritten
    assert_datasets_equal(load_digits(seed=5), fresh)
    assert cached.read_bytes()[:2] == b"PK"


@pytest.mark.parametrize("test_fraction", [0.25, 0.1, 0.5])
def test_digits_split_is_stratified(test_fraction: float) -> None:
    ds = load_digits(test_fraction=test_fraction)
    y_all = np.concatenate([ds.y_train, ds.y_test])
    n_test = len(ds.y_test)
    assert n_test == math.ceil(test_fraction * 1797)
    expected = np.bincount(y_all, minlength=10) * n_test / len(y_all)
    observed = np.bincount(ds.y_test, minlength=10)
    assert np.abs(observed - expected).max() <= 1.0


@pytest.mark.parametrize("test_fraction", [0.0, 1.0, -0.1, 1.5, float("nan"), 0.001, "0.2"])
def test_digits_rejects_bad_test_fraction(test_fraction: object) -> None:
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits(test_fraction=test_fraction)  # type: ignore[arg-type]


def test_digits_without_sklearn_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JAXSTAB_DATA_CACHE", "0")
    for module in ("sklearn", "sklearn.datasets", "sklearn.model_selection"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=r'pip install "jaxstab\[all\]"'):
        load_digits()


# --------------------------------------------------------------------------- #
# Teacher MLP.
# --------------------------------------------------------------------------- #


def reference_teacher_labels(
    x: np.ndarray,
    seed: int,
    d_in: int,
    num_classes: int,
    depth: int,
    width: int,
    phi,
) -> np.ndarray:
    """The documented teacher, written out independently of the module."""
    rng = np.random.default_rng(seed)
    dims = [d_in] + [width] * depth + [num_classes]
    ws = [rng.normal(0, 1 / np.sqrt(a), (a, b)) for a, b in itertools.pairwise(dims)]
    ref = rng.standard_normal((4096, d_in))

    def hidden(v: np.ndarray) -> np.ndarray:
        for w in ws[:-1]:
            v = phi(v @ w)
        return v

    bias = -hidden(ref).mean(0) @ ws[-1]
    return (hidden(x.astype(np.float64)) @ ws[-1] + bias).argmax(1)


@pytest.mark.parametrize(
    ("activation", "phi"),
    [
        ("tanh", np.tanh),
        ("relu", lambda v: np.maximum(v, 0)),
        ("linear", lambda v: v),
        ("sigmoid", lambda v: 1 / (1 + np.exp(-v))),
    ],
)
def test_teacher_labels_are_the_teachers_argmax(activation: str, phi) -> None:
    ds = teacher_mlp(seed=5, depth=2, width=16, activation=activation, **SMALL)
    assert_well_formed(ds, 300, 100, 8, 4)
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        expected = reference_teacher_labels(x, 5, 8, 4, 2, 16, phi)
        np.testing.assert_array_equal(y, expected)


def test_teacher_defaults() -> None:
    ds = teacher_mlp()
    assert ds.name == "teacher"
    assert_well_formed(ds, 2048, 512, 32, 10)
    np.testing.assert_array_equal(
        ds.y_train, reference_teacher_labels(ds.x_train, 0, 32, 10, 2, 64, np.tanh)
    )
    # Inputs are standard normal.
    assert abs(ds.x_train.mean()) < 0.01
    assert abs(ds.x_train.std() - 1.0) < 0.01


@pytest.mark.parametrize("activation", ["tanh", "relu", "linear"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_teacher_every_class_present(activation: str, seed: int) -> None:
    # The centered readout keeps classes from vanishing (a ReLU teacher with a
    # zero readout bias gives some classes almost no examples).
    ds = teacher_mlp(seed=seed, activation=activation)
    for y in (ds.y_train, ds.y_test):
        counts = np.bincount(y, minlength=10)
        assert counts.min() > 0
        assert counts.max() < 0.5 * len(y)


def test_teacher_deterministic_and_seeded() -> None:
    assert_datasets_equal(teacher_mlp(seed=2, **SMALL), teacher_mlp(seed=2, **SMALL))
    a, b = teacher_mlp(seed=2, **SMALL), teacher_mlp(seed=3, **SMALL)
    assert not np.array_equal(a.x_train, b.x_train)
    # The training set and the teacher do not depend on the test size.
    c = teacher_mlp(seed=2, **{**SMALL, "n_test": 7})
    np.testing.assert_array_equal(a.x_train, c.x_train)
    np.testing.assert_array_equal(a.y_train, c.y_train)


def test_teacher_task_is_learnable_from_train() -> None:
    # A linear teacher: a least-squares one-vs-rest readout fit on train must
    # generalize far above chance (0.25).
    ds = teacher_mlp(seed=0, depth=0, **SMALL)
    x1 = np.hstack([ds.x_train, np.ones((len(ds.x_train), 1), np.float32)])
    targets = np.eye(4)[ds.y_train]
    w, *_ = np.linalg.lstsq(x1, targets, rcond=None)
    pred = (np.hstack([ds.x_test, np.ones((len(ds.x_test), 1), np.float32)]) @ w).argmax(1)
    assert (pred == ds.y_test).mean() > 0.7


def test_teacher_rejects_unknown_activation() -> None:
    with pytest.raises(ValueError, match=r"'softsign'.*tanh.*relu.*linear"):
        teacher_mlp(activation="softsign")
    with pytest.raises(ValueError, match="teacher activation must be a name, got 3"):
        teacher_mlp(activation=3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("activation", "phi"),
    [
        (
            "selu",
            lambda v: 1.0507009873554805 * np.where(v > 0, v, 1.6732632423543772 * np.expm1(v)),
        ),
        ("gelu", lambda v: 0.5 * v * (1 + special.erf(v / np.sqrt(2)))),
        ("swish", lambda v: v / (1 + np.exp(-v))),
    ],
)
def test_teacher_uses_jaxstab_activations_in_float64(activation: str, phi) -> None:
    # The activation comes from jaxstab.get_activation (no copy of the registry),
    # evaluated in float64: the labels equal an independent float64 numpy teacher's.
    ds = teacher_mlp(seed=4, depth=2, width=16, activation=activation, **SMALL)
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        np.testing.assert_array_equal(y, reference_teacher_labels(x, 4, 8, 4, 2, 16, phi))


def test_data_module_has_no_activation_registry_of_its_own() -> None:
    assert not any("ACTIVATION" in name for name in vars(data) if name != "ACTIVATIONS")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"depth": -1}, "depth must be an integer >= 0, got -1"),
        ({"width": 0}, "width must be an integer >= 1, got 0"),
        ({"num_classes": 1}, "num_classes must be an integer >= 2, got 1"),
        ({"n_train": 2.5}, "n_train must be an integer >= 1, got 2.5"),
        ({"seed": -3}, "seed must be an integer >= 0, got -3"),
        ({"d_in": True}, "d_in must be an integer >= 1, got True"),
    ],
)
def test_teacher_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        teacher_mlp(**kwargs)


# --------------------------------------------------------------------------- #
# Gaussian mixture.
# --------------------------------------------------------------------------- #


def test_mixture_defaults_are_balanced_and_learnable() -> None:
    ds = gaussian_mixture()
    assert ds.name == "mixture"
    assert_well_formed(ds, 2048, 512, 32, 10)
    # 2048 = 10 * 204 + 8: counts differ by at most one.
    np.testing.assert_array_equal(np.sort(np.bincount(ds.y_train)), [204] * 2 + [205] * 8)
    np.testing.assert_array_equal(np.sort(np.bincount(ds.y_test)), [51] * 8 + [52] * 2)
    accuracy = nearest_mean_accuracy(ds)
    assert 0.5 < accuracy < 0.99  # learnable, but not trivially separable.


def test_mixture_within_class_noise_is_unit_gaussian() -> None:
    ds = gaussian_mixture(seed=1, n_train=4000, n_test=10, d_in=8, num_classes=2)
    centered = np.concatenate(
        [ds.x_train[ds.y_train == c] - ds.x_train[ds.y_train == c].mean(0) for c in (0, 1)]
    )
    # The per-feature variance of 4000 N(0, 1) draws: standard error ~0.022.
    np.testing.assert_allclose(centered.var(0), 1.0, atol=0.1)


def test_mixture_separation_controls_difficulty() -> None:
    kwargs = {"seed": 0, "n_train": 1000, "n_test": 1000, "d_in": 16, "num_classes": 5}
    zero = nearest_mean_accuracy(gaussian_mixture(separation=0.0, **kwargs))
    far = nearest_mean_accuracy(gaussian_mixture(separation=12.0, **kwargs))
    assert zero < 0.3  # chance is 0.2: the means coincide.
    assert far > 0.99


def test_mixture_deterministic_and_seeded() -> None:
    small = {**SMALL, "n_train": 302}
    a, b = gaussian_mixture(seed=7, **small), gaussian_mixture(seed=7, **small)
    assert_datasets_equal(a, b)
    c = gaussian_mixture(seed=8, **small)
    assert not np.array_equal(a.x_train, c.x_train)
    assert np.bincount(a.y_train).tolist() == [76, 76, 75, 75]
    assert np.bincount(a.y_test).tolist() == [25, 25, 25, 25]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"separation": -1.0}, "separation must be a finite number >= 0, got -1.0"),
        ({"separation": float("inf")}, "separation must be a finite number >= 0, got inf"),
        ({"n_train": 5}, "n_train must be an integer >= 10, got 5"),
        ({"n_test": 0}, "n_test must be an integer >= 10, got 0"),
        ({"d_in": 0}, "d_in must be an integer >= 1, got 0"),
    ],
)
def test_mixture_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        gaussian_mixture(**kwargs)


# --------------------------------------------------------------------------- #
# from_arrays and load_npz.
# --------------------------------------------------------------------------- #


def good_arrays() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.normal(size=(6, 3)),
        "y_train": np.array([0, 1, 2, 0, 1, 2]),
        "x_test": rng.normal(size=(4, 3)),
        "y_test": np.array([2, 1, 0, 1]),
    }


def test_from_arrays_converts_and_infers_classes() -> None:
    arrays = good_arrays()
    ds = from_arrays(**arrays)
    assert ds.name == "arrays"
    assert_well_formed(ds, 6, 4, 3, 3)
    np.testing.assert_array_equal(ds.x_train, arrays["x_train"].astype(np.float32))
    np.testing.assert_array_equal(ds.y_test, arrays["y_test"])
    # Whole-valued float labels and integer features are accepted and cast.
    ds2 = from_arrays(
        np.arange(6).reshape(3, 2),
        np.array([0.0, 4.0, 1.0]),
        np.ones((1, 2)),
        [3],
        name="mine",
        num_classes=7,
    )
    assert ds2.num_classes == 7 and ds2.name == "mine"
    assert ds2.x_train.dtype == np.float32 and ds2.y_train.dtype == np.int32
    np.testing.assert_array_equal(ds2.y_train, [0, 4, 1])
    # The inferred count sees the test labels too.
    assert from_arrays(np.ones((1, 1)), [0], np.ones((1, 1)), [5]).num_classes == 6


def test_from_arrays_copies() -> None:
    x = np.ones((2, 2), np.float32)
    y = np.array([0, 1], np.int32)
    ds = from_arrays(x, y, x, y)
    x[0, 0] = 5.0
    y[0] = 1
    assert ds.x_train[0, 0] == 1.0 and ds.y_train[0] == 0


def _replace(**changes: object) -> dict[str, object]:
    return {**good_arrays(), **changes}


@pytest.mark.parametrize(
    ("arrays", "num_classes", "match"),
    [
        (_replace(y_train=np.arange(5) % 3), None, "x_train has 6 examples but y_train has 5"),
        (_replace(y_test=np.zeros(7, int)), None, "x_test has 4 examples but y_test has 7"),
        (
            _replace(y_train=np.array([0, 1, 0.5, 0, 1, 2])),
            None,
            r"y_train\[2\] = 0.5 is not an integer",
        ),
        (
            _replace(y_test=np.array([0, 1, np.nan, 1])),
            None,
            r"y_test\[2\] = nan is not an integer",
        ),
        (_replace(y_test=np.array([0, 1, 3, 1])), 3, r"y_test\[2\] = 3 is out of range.*3\)"),
        (_replace(y_train=np.array([0, -1, 2, 0, 1, 2])), None, r"y_train\[1\] = -1"),
        (_replace(x_train=np.ones(6)), None, r"x_train must be 2-D.*\(6,\)"),
        (_replace(x_test=np.ones((4, 3, 1))), None, r"x_test must be 2-D.*\(4, 3, 1\)"),
        (_replace(y_train=np.ones((6, 1), int)), None, r"y_train must be 1-D.*\(6, 1\)"),
        (_replace(x_test=np.ones((4, 5))), None, "x_train has 3 features but x_test has 5"),
        (
            _replace(x_train=np.where(np.eye(6, 3) > 0, np.nan, 1.0)),
            None,
            r"x_train must be finite.*3 NaN/inf.*x_train\[0, 0\] = nan",
        ),
        (_replace(x_test=np.full((4, 3), np.inf)), None, r"x_test must be finite"),
        (_replace(x_train=np.full((6, 3), 1e300)), None, "outside the float32 range"),
        (_replace(x_train=np.zeros((0, 3)), y_train=np.zeros(0, int)), None, "at least 1"),
        (_replace(x_train=np.array([["a"] * 3] * 6)), None, "real numbers, got dtype <U1"),
        (_replace(y_train=np.array(["0"] * 6)), None, "integer class labels, got dtype <U1"),
        (_replace(), 0, "num_classes must be an integer >= 2, got 0"),
        (_replace(), 1, "num_classes must be an integer >= 2, got 1"),
        (_replace(), 2.0, "num_classes must be an integer >= 2, got 2.0"),
        (
            _replace(y_train=np.zeros(6, int), y_test=np.zeros(4, int)),
            None,
            "every label is 0, so there is 1 class; a classification data set needs at least 2",
        ),
    ],
)
def test_from_arrays_rejects(arrays: dict, num_classes: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        from_arrays(**arrays, num_classes=num_classes)  # type: ignore[arg-type]


def test_npz_round_trip(tmp_path) -> None:
    arrays = good_arrays()
    path = tmp_path / "toy.npz"
    np.savez(path, **arrays)
    ds = load_npz(path)
    assert ds.name == "toy"
    assert ds.num_classes == 3
    for key, value in arrays.items():
        got = getattr(ds, key)
        assert got.dtype == (np.float32 if key.startswith("x") else np.int32)
        np.testing.assert_array_equal(got, value.astype(got.dtype))
    # A stored num_classes wins over the inferred one; a str path works too.
    np.savez(path, **arrays, num_classes=5)
    assert load_npz(str(path)).num_classes == 5


def test_npz_missing_file(tmp_path) -> None:
    path = tmp_path / "nope.npz"
    with pytest.raises(FileNotFoundError, match=r"nope\.npz"):
        load_npz(path)


def test_npz_missing_keys(tmp_path) -> None:
    arrays = good_arrays()
    del arrays["y_test"], arrays["x_train"]
    path = tmp_path / "partial.npz"
    np.savez(path, **arrays)
    with pytest.raises(
        ValueError,
        match=r"missing the key\(s\) x_train, y_test; required: x_train, y_train, x_test, y_test",
    ):
        load_npz(path)


def test_npz_bad_contents(tmp_path) -> None:
    bad_classes = tmp_path / "bad_classes.npz"
    np.savez(bad_classes, **good_arrays(), num_classes=np.array([3, 4]))
    with pytest.raises(ValueError, match=r"num_classes in .* must be an integer scalar"):
        load_npz(bad_classes)

    bad_labels = tmp_path / "bad_labels.npz"
    y_bad = np.array([0, 1, 2, 0, 1, 9])
    np.savez(bad_labels, **{**good_arrays(), "y_train": y_bad}, num_classes=3)
    with pytest.raises(ValueError, match=r"y_train\[5\] = 9 is out of range"):
        load_npz(bad_labels)

    not_npz = tmp_path / "garbage.npz"
    not_npz.write_bytes(b"not an archive")
    with pytest.raises(ValueError, match=r"garbage\.npz.*not a readable \.npz"):
        load_npz(not_npz)

    # A damaged zip (a truncated download): a clear error, and no file left open
    # (np.load leaves its own handle open when the zip is damaged).
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(b"PK\x03\x04" + b"\x00" * 64)
    fds = Path("/proc/self/fd")
    open_before = len(list(fds.iterdir())) if fds.is_dir() else None
    with pytest.raises(ValueError, match=r"damaged\.npz.*not a readable \.npz") as raised:
        load_npz(damaged)
    if open_before is not None:
        assert len(list(fds.iterdir())) == open_before, raised.value

    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(ValueError, match=r"single array, not an \.npz archive"):
        load_npz(single)

    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, **{**good_arrays(), "y_test": np.array([0, 1, 2, None], dtype=object)})
    with pytest.raises(ValueError, match="unreadable array"):
        load_npz(pickled)


# --------------------------------------------------------------------------- #
# get_dataset.
# --------------------------------------------------------------------------- #


def test_get_dataset_by_name() -> None:
    assert DATASETS == ("digits", "teacher", "mixture")
    assert_datasets_equal(get_dataset("digits", seed=1), load_digits(seed=1))
    assert_datasets_equal(get_dataset("teacher", seed=1, **SMALL), teacher_mlp(seed=1, **SMALL))
    assert_datasets_equal(
        get_dataset("mixture", seed=1, **SMALL), gaussian_mixture(seed=1, **SMALL)
    )


def test_get_dataset_by_npz_path(tmp_path) -> None:
    path = tmp_path / "mine.npz"
    np.savez(path, **good_arrays())
    for name in (path, str(path)):
        ds = get_dataset(name)
        assert ds.name == "mine"
        np.testing.assert_array_equal(ds.y_train, good_arrays()["y_train"])
    with pytest.raises(TypeError, match=r"takes no options.*\['seed'\]"):
        get_dataset(str(path), seed=0)
    with pytest.raises(FileNotFoundError, match=r"absent\.npz"):
        get_dataset(str(tmp_path / "absent.npz"))


@pytest.mark.parametrize("name", ["mnist", "Digits", "", 3])
def test_get_dataset_unknown_name(name: object) -> None:
    with pytest.raises(
        ValueError,
        match=rf"unknown data set {name!r}; valid names: digits, teacher, mixture, .*\.npz",
    ):
        get_dataset(name)  # type: ignore[arg-type]


def test_get_dataset_passes_options_through() -> None:
    with pytest.raises(TypeError, match="separation"):
        get_dataset("teacher", separation=2.0)


def test_repr_and_all() -> None:
    ds = gaussian_mixture(seed=0, **SMALL)
    assert repr(ds) == "Dataset(name='mixture', n_train=300, n_test=100, d_in=8, num_classes=4)"
    assert set(data.__all__) == {
        "DATASETS",
        "Dataset",
        "from_arrays",
        "gaussian_mixture",
        "get_dataset",
        "load_digits",
        "load_npz",
        "teacher_mlp",
    }
    for name in data.__all__:
        assert hasattr(data, name)
