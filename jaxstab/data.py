"""Classification data sets for the experiments, as numpy arrays.

Nothing here downloads anything. Three data sets are built in:

* ``"digits"``: the 8x8 handwritten digits that scikit-learn ships inside its
  package (:func:`load_digits`; needs the optional ``jaxstab[all]`` extra).
* ``"teacher"``: Gaussian inputs labelled by a random teacher MLP
  (:func:`teacher_mlp`).
* ``"mixture"``: a balanced mixture of unit-variance Gaussian classes
  (:func:`gaussian_mixture`).

Your own arrays enter through :func:`from_arrays` or a local ``.npz`` file
through :func:`load_npz`; both check the arrays once, here, so that training code
can assume float32 features ``[n, d_in]`` and int32 labels in
``[0, num_classes)``. :func:`get_dataset` picks one by name or path.

Everything is deterministic for a given seed: randomness comes only from
``np.random.default_rng(seed)`` (and scikit-learn's ``random_state=seed``).

Example:
  >>> ds = gaussian_mixture(seed=0, n_train=100, n_test=20, d_in=8, num_classes=4)
  >>> ds.x_train.shape, ds.y_train.dtype, ds.d_out
  ((100, 8), dtype('int32'), 4)
"""

from __future__ import annotations

import itertools
import math
import os
import zipfile
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxstab import _checks
from jaxstab._activations import ACTIVATIONS, get_activation

__all__ = [
    "DATASETS",
    "Dataset",
    "from_arrays",
    "gaussian_mixture",
    "get_dataset",
    "load_digits",
    "load_npz",
    "teacher_mlp",
]

DATASETS: tuple[str, ...] = ("digits", "teacher", "mixture")
"""The built-in data set names accepted by :func:`get_dataset`."""

_NPZ_KEYS: tuple[str, ...] = ("x_train", "y_train", "x_test", "y_test")
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_INSTALL_HINT = 'pip install "jaxstab[all]"'


class Dataset(NamedTuple):
    """A classification data set split into train and test.

    Attributes:
      x_train: float32 ``[n_train, d_in]`` features.
      y_train: int32 ``[n_train]`` labels in ``[0, num_classes)``.
      x_test: float32 ``[n_test, d_in]`` features.
      y_test: int32 ``[n_test]`` labels in ``[0, num_classes)``.
      num_classes: the number of classes (the model's output width).
      name: a short name for logs and plots.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    name: str

    @property
    def d_in(self) -> int:
        """The input dimension (number of features)."""
        return int(self.x_train.shape[1])

    @property
    def d_out(self) -> int:
        """The output dimension of a classifier, ``num_classes``."""
        return int(self.num_classes)

    @property
    def n_train(self) -> int:
        """The number of training examples."""
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        """The number of test examples."""
        return int(self.x_test.shape[0])

    def __repr__(self) -> str:
        # The default NamedTuple repr would print every array.
        return (
            f"Dataset(name={self.name!r}, n_train={self.n_train}, n_test={self.n_test}, "
            f"d_in={self.d_in}, num_classes={self.num_classes})"
        )


# --------------------------------------------------------------------------- #
# Argument checks shared by the generators.
# --------------------------------------------------------------------------- #


def _check_int(name: str, value: Any, minimum: int) -> int:
    """Returns ``value`` as an int, or raises if it is not an integer >= minimum."""
    return _checks.integer(name, value, minimum=minimum)


def _check_seed(seed: Any) -> int:
    return _check_int("seed", seed, 0)


# --------------------------------------------------------------------------- #
# Digits.
# --------------------------------------------------------------------------- #


def load_digits(test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """The 8x8 handwritten digits shipped with scikit-learn, standardized.

    1797 grey-scale images of the digits 0-9 (64 features with values 0-16),
    read from the copy inside the scikit-learn package: nothing is downloaded.
    The train/test split is stratified by class and fixed by ``seed``. Each
    feature is standardized with the *training* mean and standard deviation;
    a feature that is constant on the training set (some border pixels are
    always 0) is only centered, so it is 0 on the training set and never NaN.

    Args:
      test_fraction: the fraction of the 1797 examples held out for testing,
        in ``(0, 1)``; the test set has ``ceil(test_fraction * 1797)`` examples.
      seed: seeds the split (scikit-learn's ``random_state``); an integer >= 0.

    Returns:
      A :class:`Dataset` named ``"digits"`` with ``d_in=64`` and 10 classes.

    Raises:
      ImportError: if scikit-learn is not installed (``pip install "jaxstab[all]"``).
      ValueError: if ``test_fraction`` is not in ``(0, 1)`` or leaves fewer than
        10 examples (one per class) in a split, or ``seed`` is not an integer >= 0.
    """
    seed = _check_seed(seed)
    test_fraction = _checks.probability("test_fraction", test_fraction, lo_open=True, hi_open=True)
    cache = _digits_cache(test_fraction, seed)
    if cache is not None and cache.exists():
        try:
            with np.load(cache) as f:
                arrays = [f[k] for k in _SPLIT_KEYS]
            return from_arrays(*arrays, name="digits", num_classes=10)
        except Exception:  # a damaged or foreign file: split again and rewrite it
            pass
    try:
        from sklearn.datasets import load_digits as sk_load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as e:
        raise ImportError(
            "load_digits needs scikit-learn, which ships the digits data; "
            f"install the optional dependencies with: {_INSTALL_HINT}"
        ) from e

    bunch = sk_load_digits()
    x = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target, dtype=np.int64)
    num_classes = 10
    n_test = math.ceil(float(test_fraction) * len(y))  # scikit-learn's rounding.
    n_train = len(y) - n_test
    if min(n_test, n_train) < num_classes:
        raise ValueError(
            f"test_fraction={test_fraction!r} gives {n_train} train and {n_test} test "
            f"examples; a stratified split needs at least {num_classes} (one per class) in "
            "each"
        )
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=n_test, random_state=seed, shuffle=True, stratify=y
    )
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    # The pixels that are constant on the training set are always 0, so their std
    # is exactly 0 (the others' is > 0.02); dividing those by 1 leaves them
    # centered at 0 instead of making them 0/0 = NaN.
    scale = np.where(std > 0, std, 1.0)
    x_train = (x_train - mean) / scale
    x_test = (x_test - mean) / scale
    if cache is not None:
        _write_npz(cache, dict(zip(_SPLIT_KEYS, (x_train, y_train, x_test, y_test), strict=True)))
    return from_arrays(x_train, y_train, x_test, y_test, name="digits", num_classes=num_classes)


_SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _digits_cache(test_fraction: float, seed: int) -> Any:
    """Where the standardized split is kept, so a later process skips importing
    scikit-learn (about a second of every start): ``$XDG_CACHE_HOME/jaxstab/data``,
    keyed by the split and the versions of scikit-learn and numpy. None when
    ``JAXSTAB_DATA_CACHE=0`` or scikit-learn is not installed."""
    import importlib.metadata
    from pathlib import Path

    if os.environ.get("JAXSTAB_DATA_CACHE") == "0":
        return None
    try:
        sklearn_version = importlib.metadata.version("scikit-learn")
    except importlib.metadata.PackageNotFoundError:
        return None
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jaxstab" / "data"
    name = f"digits-{test_fraction!r}-{seed}-sklearn{sklearn_version}-numpy{np.__version__}.npz"
    return root / name


def _write_npz(path: Any, arrays: dict[str, np.ndarray]) -> None:
    """Writes ``arrays`` to ``path`` atomically; a cache that cannot be written is skipped."""
    import tempfile

    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)
    except OSError:
        if tmp is not None:
            os.unlink(tmp)


# --------------------------------------------------------------------------- #
# Synthetic data sets.
# --------------------------------------------------------------------------- #


_TEACHER_REFERENCE_SIZE = 4096
"""Inputs on which the teacher's readout bias is estimated (see teacher_mlp)."""


def teacher_mlp(
    seed: int = 0,
    n_train: int = 2048,
    n_test: int = 512,
    d_in: int = 32,
    num_classes: int = 10,
    depth: int = 2,
    width: int = 64,
    activation: str = "tanh",
) -> Dataset:
    """Gaussian inputs labelled by the argmax of a random teacher MLP.

    The teacher has ``depth`` hidden layers of ``width`` units and a linear
    readout to ``num_classes`` logits. Its weights are LeCun-normal,
    ``W ~ N(0, 1/fan_in)`` of shape ``[fan_in, fan_out]``, and its hidden biases
    are 0. The readout bias is ``-mean(h) @ W_out``, with ``mean(h)`` the mean of
    the last hidden layer over reference inputs, so every logit has mean ~0:
    without it a ReLU teacher's positive-mean features favor a few classes and
    others get almost no examples.

    All draws come from one ``np.random.default_rng(seed)`` in this order: the
    weights layer by layer (input side first), then
    ``4096`` reference inputs ``[4096, d_in]``, then ``x_train``, then ``x_test``,
    each input ``N(0, I)``. So the teacher depends only on the seed and the
    architecture, and ``x_train`` does not depend on ``n_test``. The labels are
    computed in float64 from the returned float32 inputs, so they are exactly a
    function of ``x``. Classes are not balanced; the labels follow the teacher.

    Args:
      seed: an integer >= 0.
      n_train: number of training examples, >= 1.
      n_test: number of test examples, >= 1.
      d_in: input dimension, >= 1.
      num_classes: number of classes (the teacher's logits), >= 2.
      depth: number of hidden layers, >= 0 (0 gives a linear teacher).
      width: units per hidden layer, >= 1.
      activation: the hidden activation, a name of :data:`jaxstab.ACTIVATIONS`
        (aliases ``swish``, ``identity``), evaluated by
        :func:`jaxstab.get_activation` in float64.

    Returns:
      A :class:`Dataset` named ``"teacher"``.

    Raises:
      ValueError: for an unknown activation (the message lists the valid
        names) or an integer argument out of range.
    """
    seed = _check_seed(seed)
    n_train = _check_int("n_train", n_train, 1)
    n_test = _check_int("n_test", n_test, 1)
    d_in = _check_int("d_in", d_in, 1)
    num_classes = _check_int("num_classes", num_classes, 2)
    depth = _check_int("depth", depth, 0)
    width = _check_int("width", width, 1)
    if not isinstance(activation, str):
        raise ValueError(
            f"teacher activation must be a name, got {activation!r}; valid names: "
            f"{', '.join(ACTIVATIONS)}"
        )
    phi = get_activation(activation)

    rng = np.random.default_rng(seed)
    dims = [d_in, *([width] * depth), num_classes]
    weights = [
        rng.normal(0.0, 1.0 / math.sqrt(fan_in), size=(fan_in, fan_out))
        for fan_in, fan_out in itertools.pairwise(dims)
    ]
    hidden_weights, w_out = weights[:-1], weights[-1]

    def features(x: np.ndarray) -> np.ndarray:
        h = x.astype(np.float64)
        for w in hidden_weights:
            # jaxstab's own activation, in float64 like the numpy matmuls around it.
            with jax.enable_x64(True):
                h = np.asarray(phi(jnp.asarray(h @ w, jnp.float64)))
        return h

    reference = rng.standard_normal((_TEACHER_REFERENCE_SIZE, d_in))
    b_out = -features(reference).mean(axis=0) @ w_out

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.standard_normal((n, d_in)).astype(np.float32)
        y = np.argmax(features(x) @ w_out + b_out, axis=1)
        return x, y

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    return from_arrays(x_train, y_train, x_test, y_test, name="teacher", num_classes=num_classes)


def gaussian_mixture(
    seed: int = 0,
    n_train: int = 2048,
    n_test: int = 512,
    d_in: int = 32,
    num_classes: int = 10,
    separation: float = 3.0,
) -> Dataset:
    """A balanced mixture of unit-variance Gaussian classes.

    Class means are drawn once, ``mu_k ~ N(0, separation^2 / d_in * I)``, so
    ``|mu_k| ~ separation`` and two means are ``~ sqrt(2) * separation`` apart
    whatever ``d_in``; an example of class ``y`` is ``x = mu_y + N(0, I)``.
    At the default ``separation=3`` with 10 classes in 32 dimensions the classes
    overlap a little: the nearest-class-mean classifier gets roughly 85-90% test
    accuracy, not 100%. Smaller ``separation`` makes the task harder.

    Labels are exactly balanced (class counts differ by at most one when the
    size is not a multiple of ``num_classes``) and shuffled. All draws come from
    one ``np.random.default_rng(seed)``: the means, then the train labels and
    noise, then the test labels and noise.

    Args:
      seed: an integer >= 0.
      n_train: number of training examples, >= ``num_classes``.
      n_test: number of test examples, >= ``num_classes``.
      d_in: input dimension, >= 1.
      num_classes: number of classes, >= 2.
      separation: the typical norm of a class mean, a finite number >= 0.

    Returns:
      A :class:`Dataset` named ``"mixture"``.

    Raises:
      ValueError: if an argument is out of range (too few examples to hold every
        class, a negative or non-finite ``separation``, ...).
    """
    seed = _check_seed(seed)
    num_classes = _check_int("num_classes", num_classes, 2)
    n_train = _check_int("n_train", n_train, num_classes)
    n_test = _check_int("n_test", n_test, num_classes)
    d_in = _check_int("d_in", d_in, 1)
    separation = _checks.nonnegative_number("separation", separation)

    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, float(separation) / math.sqrt(d_in), size=(num_classes, d_in))

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.permutation(np.arange(n) % num_classes)
        x = means[y] + rng.standard_normal((n, d_in))
        return x, y

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    return from_arrays(x_train, y_train, x_test, y_test, name="mixture", num_classes=num_classes)


# --------------------------------------------------------------------------- #
# User data.
# --------------------------------------------------------------------------- #


def _check_features(name: str, x: Any) -> np.ndarray:
    """``x`` as a float32 ``[n, d]`` array, or a ValueError saying what is wrong."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D [examples, features], got shape {x.shape}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name} must have at least 1 example and 1 feature, got shape {x.shape}")
    if x.dtype == np.bool_ or not (
        np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)
    ):
        raise ValueError(f"{name} must hold real numbers, got dtype {x.dtype}")
    finite = np.isfinite(x)
    if not finite.all():
        bad = tuple(int(i) for i in np.argwhere(~finite)[0])
        raise ValueError(
            f"{name} must be finite, but has {int((~finite).sum())} NaN/inf value(s), "
            f"the first {name}[{bad[0]}, {bad[1]}] = {x[bad]}"
        )
    # Checked before the cast, which would turn these into inf (with a warning).
    too_large = np.abs(x) > _FLOAT32_MAX
    if too_large.any():
        bad = tuple(int(i) for i in np.argwhere(too_large)[0])
        raise ValueError(
            f"{name}[{bad[0]}, {bad[1]}] = {x[bad]} is outside the float32 range "
            f"(+-{_FLOAT32_MAX:.3g})"
        )
    return x.astype(np.float32)


def _check_labels(name: str, y: Any) -> np.ndarray:
    """``y`` as an int64 ``[n]`` array, or a ValueError saying what is wrong."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D [examples], got shape {y.shape}")
    if np.issubdtype(y.dtype, np.integer) and y.dtype != np.bool_:
        return y.astype(np.int64)
    if not np.issubdtype(y.dtype, np.floating):
        raise ValueError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    # Floats are accepted when every value is a whole number (e.g. labels that
    # went through a float array); 0.5 or NaN is a mistake, not a class.
    whole = np.isfinite(y) & (y == np.round(y)) & (np.abs(y) < 2.0**62)
    if not whole.all():
        i = int(np.argmax(~whole))
        raise ValueError(
            f"{name} must hold integer class labels, but {name}[{i}] = {y[i]} is not an integer"
        )
    return y.astype(np.int64)


def from_arrays(
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any,
    *,
    name: str = "arrays",
    num_classes: int | None = None,
) -> Dataset:
    """A :class:`Dataset` from arrays, checked and converted to float32/int32.

    Args:
      x_train: ``[n_train, d_in]`` real, finite features.
      y_train: ``[n_train]`` integer labels in ``[0, num_classes)``. A float
        array is accepted when every value is a whole number.
      x_test: ``[n_test, d_in]`` real, finite features (same ``d_in``).
      y_test: ``[n_test]`` integer labels in ``[0, num_classes)``.
      name: the data set's name.
      num_classes: the number of classes, at least 2; if None, ``1 + `` the
        largest label of the train and test sets.

    Returns:
      The :class:`Dataset`, with float32 features and int32 labels (new arrays,
      never views of the inputs).

    Raises:
      ValueError: if an ``x`` is not 2-D, empty, non-numeric, non-finite or
        outside the float32 range; a ``y`` is not 1-D or holds a non-integer;
        ``x`` and ``y`` lengths differ; train and test ``d_in`` differ;
        ``num_classes`` is not an integer >= 2 (or, inferred, every label is 0:
        one class); or a label is outside
        ``[0, num_classes)``. The message names the offending array and value.
    """
    if not isinstance(name, str):
        raise ValueError(f"name must be a string, got {name!r}")
    xs = {"x_train": _check_features("x_train", x_train)}
    xs["x_test"] = _check_features("x_test", x_test)
    ys = {"y_train": _check_labels("y_train", y_train)}
    ys["y_test"] = _check_labels("y_test", y_test)
    for split in ("train", "test"):
        n_x, n_y = xs[f"x_{split}"].shape[0], ys[f"y_{split}"].shape[0]
        if n_x != n_y:
            raise ValueError(
                f"x_{split} has {n_x} examples but y_{split} has {n_y} labels; "
                "they must have the same length"
            )
    d_train, d_test = xs["x_train"].shape[1], xs["x_test"].shape[1]
    if d_train != d_test:
        raise ValueError(f"x_train has {d_train} features but x_test has {d_test}; d_in must match")
    if num_classes is None:
        num_classes = 1 + max(int(y.max()) for y in ys.values())
        if num_classes < 2:
            raise ValueError(
                f"every label is {num_classes - 1}, so there is 1 class; a classification data "
                "set needs at least 2 classes (pass num_classes if some are absent)"
            )
    num_classes = _check_int("num_classes", num_classes, 2)
    for key, y in ys.items():
        bad = (y < 0) | (y >= num_classes)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(
                f"{key}[{i}] = {int(y[i])} is out of range: labels must be in "
                f"[0, num_classes={num_classes})"
            )
    return Dataset(
        x_train=xs["x_train"],
        y_train=ys["y_train"].astype(np.int32),
        x_test=xs["x_test"],
        y_test=ys["y_test"].astype(np.int32),
        num_classes=num_classes,
        name=name,
    )


def load_npz(path: str | os.PathLike[str]) -> Dataset:
    """A :class:`Dataset` from a local ``.npz`` file.

    The file holds the arrays ``x_train, y_train, x_test, y_test`` (as written
    by ``np.savez(path, x_train=..., ...)``) and optionally a scalar
    ``num_classes``; other keys are ignored. Pickled objects are never loaded.
    The arrays then go through :func:`from_arrays`' checks.

    Args:
      path: the file's path.

    Returns:
      The :class:`Dataset`, named after the file (its name without ``.npz``).

    Raises:
      FileNotFoundError: if no file exists at ``path``.
      ValueError: if the file is not a readable ``.npz`` archive, lacks one of
        the required keys (the message lists the missing and the required
        keys), has a ``num_classes`` that is not an integer scalar, or fails a
        :func:`from_arrays` check.
    """
    path_str = os.fspath(path)
    if not os.path.isfile(path_str):
        raise FileNotFoundError(f"no .npz data file at {path_str!r}")
    # Opened here, not by np.load: numpy leaves its own file handle open when the
    # archive turns out to be a damaged zip.
    with open(path_str, "rb") as fh:
        try:
            archive = np.load(fh, allow_pickle=False)
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise ValueError(f"{path_str!r} is not a readable .npz file: {e}") from e
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError(
                f"{path_str!r} holds a single array, not an .npz archive with the keys "
                f"{', '.join(_NPZ_KEYS)}"
            )
        with archive:
            missing = [key for key in _NPZ_KEYS if key not in archive.files]
            if missing:
                raise ValueError(
                    f"{path_str!r} is missing the key(s) {', '.join(missing)}; required: "
                    f"{', '.join(_NPZ_KEYS)} (optional: num_classes); found: "
                    f"{', '.join(archive.files) or 'none'}"
                )
            try:
                arrays = {key: archive[key] for key in _NPZ_KEYS}
                stored_classes = archive["num_classes"] if "num_classes" in archive.files else None
            except ValueError as e:  # An object array, which would need pickle.
                raise ValueError(f"{path_str!r} has an unreadable array: {e}") from e
    num_classes: int | None = None
    if stored_classes is not None:
        if stored_classes.shape != () or not np.issubdtype(stored_classes.dtype, np.integer):
            raise ValueError(
                f"num_classes in {path_str!r} must be an integer scalar, got {stored_classes!r}"
            )
        num_classes = int(stored_classes)
    name = os.path.basename(path_str)
    name = name[: -len(".npz")] if name.lower().endswith(".npz") else name
    return from_arrays(**arrays, name=name, num_classes=num_classes)


def get_dataset(name: str | os.PathLike[str], **kwargs: Any) -> Dataset:
    """A data set by name (one of :data:`DATASETS`) or ``.npz`` path.

    Args:
      name: ``"digits"`` (:func:`load_digits`), ``"teacher"``
        (:func:`teacher_mlp`), ``"mixture"`` (:func:`gaussian_mixture`), or
        a path ending in ``.npz`` (:func:`load_npz`).
      **kwargs: passed to the builder, e.g. ``seed=1``. A ``.npz`` file takes
        none.

    Returns:
      The :class:`Dataset`.

    Raises:
      ValueError: for an unknown name (the message lists the valid ones).
      TypeError: for options the builder does not take.
      Errors of the builder (see each function).
    """
    builders: dict[str, Callable[..., Dataset]] = {
        "digits": load_digits,
        "teacher": teacher_mlp,
        "mixture": gaussian_mixture,
    }
    if isinstance(name, os.PathLike) or (isinstance(name, str) and name.lower().endswith(".npz")):
        if kwargs:
            raise TypeError(
                f"a .npz file takes no options, got {sorted(kwargs)} for {os.fspath(name)!r}"
            )
        return load_npz(name)
    if not isinstance(name, str) or name not in builders:
        raise ValueError(
            f"unknown data set {name!r}; valid names: {', '.join(DATASETS)}, "
            "or a path to a .npz file"
        )
    return builders[name](**kwargs)
