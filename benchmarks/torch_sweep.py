"""A ``jaxstab sweep`` job written as a PyTorch loop: the baseline of the time-to-result section.

Run as a whole process, as a user runs their own script::

    python -m benchmarks.torch_sweep --depths 8 --widths 128 --activations relu \\
        --inits he_normal --lrs 0.05 --clips 1 --seeds 32 --steps 200 \\
        --batch-size 128 --eval-every 50 --out DIR [--seeds-mode loop|vmap|bmm]

It does what ``jaxstab sweep`` does with the same options: the digits (the
same split and standardization as :func:`jaxstab.data.load_digits`, read from
scikit-learn's copy), every configuration of the grid (depth x width x
activation x init x lr x clip) for ``--seeds`` seeds, SGD on minibatches drawn
with replacement, global-norm clipping, the loss on the training set and the
loss and accuracy on the test set at step 0 and every ``--eval-every`` steps
(at most 4096 examples each), per-layer statistics of 256 training examples
(one forward and backward pass) at init and at the end, and ``results.csv``,
``curves.npz`` and ``layer_stats.npz`` in ``--out``. It imports neither jax
nor jaxstab, so the process pays only for torch.

Seeds are trained in one of three ways (``--seeds-mode``):

* ``loop``: a plain Python loop over seeds of ``nn.Sequential`` +
  ``clip_grad_norm_`` + ``torch.optim.SGD``, the textbook loop;
* ``vmap``: the seeds' parameters stacked (``torch.func.stack_module_state``)
  and one step of all seeds as ``torch.func.vmap(grad_and_value(loss))``;
* ``bmm``: the seeds' weights as ``[seeds, in, out]`` tensors and the network
  as batched matmuls (``torch.baddbmm``), one autograd pass for all seeds.

The time-to-result section times each in a short trial and uses the fastest.
Prints one JSON line: ``{"seconds": {"import", "data", "train", "write"}, ...}``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_T0 = time.perf_counter()

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

_T_IMPORT = time.perf_counter() - _T0

EVAL_LIMIT = 4096  # examples per split in each evaluation, as jaxstab.experiment
DIAGNOSTIC_BATCH = 256  # examples of the per-layer statistics, as jaxstab.experiment
SATURATION = 1e-2  # |phi'(z)| under which a unit is saturated, as jaxstab.diagnostics
MODES = ("loop", "vmap", "bmm")
ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}
# Weight standard deviation of each initializer: (scale, fan) of variance_scaling.
ACTIVATION_MODULES = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid}
INITS = {"he_normal": (2.0, "fan_in"), "xavier_normal": (1.0, "fan_avg")}


def load_digits(test_fraction: float = 0.25, seed: int = 0) -> tuple[np.ndarray, ...]:
    """``jaxstab.data.load_digits``'s arrays: a stratified split, standardized on train."""
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    x = np.asarray(bunch.data, np.float64)
    y = np.asarray(bunch.target, np.int64)
    n_test = math.ceil(test_fraction * len(y))
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=n_test, random_state=seed, shuffle=True, stratify=y
    )
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    scale = np.where(std > 0, std, 1.0)  # constant pixels are only centered
    return (
        ((x_train - mean) / scale).astype(np.float32),
        y_train,
        ((x_test - mean) / scale).astype(np.float32),
        y_test,
    )


def weight_std(init: str, n_in: int, n_out: int) -> float:
    """The standard deviation of a ``[n_in, n_out]`` weight under ``init``."""
    scale, fan = INITS[init]
    return math.sqrt(scale / (n_in if fan == "fan_in" else (n_in + n_out) / 2))


def _derivative(name: str, z: torch.Tensor) -> torch.Tensor:
    if name == "relu":
        return (z > 0).to(z.dtype)
    if name == "tanh":
        return 1 - torch.tanh(z) ** 2
    s = torch.sigmoid(z)
    return s * (1 - s)


# --- stacked networks: weights [seeds, in, out], biases [seeds, 1, out] ---------------


def forward(ws: list[torch.Tensor], bs: list[torch.Tensor], x: torch.Tensor, act: str) -> Any:
    """Logits ``[seeds, batch, classes]`` of ``x`` (``[batch, d]`` or ``[seeds, batch, d]``)."""
    phi = ACTIVATIONS[act]
    h = x.expand(ws[0].shape[0], *x.shape[-2:]) if x.dim() == 2 else x
    for w, b in zip(ws[:-1], bs[:-1]):
        h = phi(torch.baddbmm(b, h, w))
    return torch.baddbmm(bs[-1], h, ws[-1])


def seed_losses(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy per seed ``[seeds]`` of logits ``[seeds, batch, classes]``."""
    s, n, c = logits.shape
    y = y.expand(s, n) if y.dim() == 1 else y
    return (
        F.cross_entropy(logits.reshape(s * n, c), y.reshape(s * n), reduction="none")
        .view(s, n)
        .mean(1)
    )


def evaluate(ws: list[torch.Tensor], bs: list[torch.Tensor], data: dict[str, Any], act: str) -> Any:
    """Per seed: loss on the training set, loss and accuracy on the test set."""
    with torch.no_grad():
        train = seed_losses(forward(ws, bs, data["x_eval"], act), data["y_eval"])
        logits = forward(ws, bs, data["x_test"], act)
        test = seed_losses(logits, data["y_test"])
        acc = (logits.argmax(-1) == data["y_test"]).float().mean(1)
    return torch.stack([train, test, acc], 1)  # [seeds, 3]


def layer_stats(
    ws: list[torch.Tensor], bs: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor, act: str
) -> dict[str, np.ndarray]:
    """Per seed and hidden layer, from one forward and backward pass of a batch.

    As ``jaxstab.diagnostics.layer_stats``: second moment, mean and variance of
    the pre-activations, second moment of the activations, dead and saturated
    fractions, weight- and bias-gradient norms and the back-propagated signal.
    """
    ws = [w.detach().requires_grad_(True) for w in ws]
    bs = [b.detach().requires_grad_(True) for b in bs]
    phi = ACTIVATIONS[act]
    h = x.expand(ws[0].shape[0], *x.shape)
    zs, hs = [], []
    for w, b in zip(ws[:-1], bs[:-1]):
        z = torch.baddbmm(b, h, w)
        h = phi(z)
        zs.append(z)
        hs.append(h)
    loss = seed_losses(torch.baddbmm(bs[-1], h, ws[-1]), y).sum()
    grads = torch.autograd.grad(loss, [*ws[:-1], *bs[:-1], *zs])
    n = len(zs)
    with torch.no_grad():
        out = {
            "second_moment": [z.square().mean((1, 2)) for z in zs],
            "mean": [z.mean((1, 2)) for z in zs],
            "variance": [z.var((1, 2), unbiased=False) for z in zs],
            "activation_second_moment": [h.square().mean((1, 2)) for h in hs],
            "dead_fraction": [(h == 0).all(1).float().mean(1) for h in hs],
            "saturated_fraction": [
                (_derivative(act, z).abs() < SATURATION).all(1).float().mean(1) for z in zs
            ],
            "grad_norm": [g.square().sum((1, 2)).sqrt() for g in grads[:n]],
            "bias_grad_norm": [g.square().sum((1, 2)).sqrt() for g in grads[n : 2 * n]],
            "signal_second_moment": [
                (x.shape[0] * g).square().mean((1, 2)) for g in grads[2 * n :]
            ],
        }
    return {k: torch.stack(v, 1).numpy() for k, v in out.items()}


# --- one SGD step of every seed at once ------------------------------------------------


def vmap_grad(act: str) -> Any:
    """``grad(ws, bs, xb, yb) -> (gw, gb, losses)``: torch.func.vmap of one seed's gradient."""
    from torch.func import grad_and_value, vmap

    phi = ACTIVATIONS[act]

    def loss(w: list[torch.Tensor], b: list[torch.Tensor], xb: Any, yb: Any) -> Any:
        h = xb
        for wi, bi in zip(w[:-1], b[:-1]):
            h = phi(torch.addmm(bi, h, wi))
        return F.cross_entropy(torch.addmm(b[-1], h, w[-1]), yb)

    step = vmap(grad_and_value(loss, argnums=(0, 1)))

    def grad(ws: Any, bs: Any, xb: Any, yb: Any) -> Any:
        (gw, gb), value = step(ws, bs, xb, yb)
        return list(gw), list(gb), value

    return grad


def bmm_grad(act: str) -> Any:
    """``grad(ws, bs, xb, yb) -> (gw, gb, losses)`` by one autograd pass of the batched net."""

    def grad(ws: Any, bs: Any, xb: Any, yb: Any) -> Any:
        leaves = [t.detach().requires_grad_(True) for t in (*ws, *bs)]
        loss = seed_losses(forward(leaves[: len(ws)], leaves[len(ws) :], xb, act), yb)
        grads = torch.autograd.grad(loss.sum(), leaves)  # seeds do not mix: per-seed grads
        return list(grads[: len(ws)]), list(grads[len(ws) :]), loss.detach()

    return grad


def sgd_step(
    ws: list[torch.Tensor],
    bs: list[torch.Tensor],
    xb: torch.Tensor,
    yb: torch.Tensor,
    act: str,
    lr: float,
    clip: float | None,
    grad_fn: Any = None,
) -> torch.Tensor:
    """One clipped SGD step of every seed, in place; returns the seeds' losses ``[seeds]``.

    Each seed's gradient is scaled by ``min(1, clip / (norm + 1e-6))``, the rule
    of ``torch.nn.utils.clip_grad_norm_``, before ``w -= lr * g``.
    """
    gw, gb, loss = (grad_fn or bmm_grad(act))(ws, bs, xb, yb)
    with torch.no_grad():
        step = torch.full((ws[0].shape[0],), float(lr))
        if clip is not None:
            norm = sum(g.square().sum((1, 2)) for g in (*gw, *gb)).sqrt()
            step = step * torch.clamp(clip / (norm + 1e-6), max=1.0)
        for t, g in zip((*ws, *bs), (*gw, *gb)):
            t.sub_(step[:, None, None] * g)
    return loss


# --- the three ways to train the seeds of one configuration ----------------------------


class Config:
    """One grid point: its settings and data; :meth:`train` returns what was measured."""

    def __init__(self, point: dict[str, Any], args: argparse.Namespace, data: dict[str, Any]):
        self.point, self.args, self.data = point, args, data
        d_in, d_out = data["x_train"].shape[1], int(data["y_train"].max()) + 1
        self.sizes = [d_in] + [point["width"]] * point["depth"] + [d_out]

    def init(self, seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """One seed's weights ``[1, in, out]`` and zero biases ``[1, 1, out]``."""
        gen = torch.Generator().manual_seed(1_000_003 * self.args.seed + seed)
        ws, bs = [], []
        for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]):
            std = weight_std(self.point["init"], n_in, n_out)
            ws.append(torch.empty(1, n_in, n_out).normal_(0.0, std, generator=gen))
            bs.append(torch.zeros(1, 1, n_out))
        return ws, bs

    def init_stacked(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        per_seed = [self.init(s) for s in range(self.args.seeds)]
        ws = [torch.cat([p[0][i] for p in per_seed]) for i in range(len(self.sizes) - 1)]
        bs = [torch.cat([p[1][i] for p in per_seed]) for i in range(len(self.sizes) - 1)]
        return ws, bs

    def measure(self, ws: list[torch.Tensor], bs: list[torch.Tensor], when: str) -> None:
        stats = layer_stats(ws, bs, self.data["x_diag"], self.data["y_diag"], self.point["act"])
        for k, v in stats.items():
            self.stats.setdefault(f"{when}/{k}", []).append(v)

    def train(self, mode: str) -> dict[str, np.ndarray]:
        """Trains every seed; per seed: losses ``[steps]`` and evaluations ``[evals, 3]``."""
        self.stats: dict[str, list[np.ndarray]] = {}
        if mode == "loop":
            losses, evals = [], []
            for seed in range(self.args.seeds):
                seed_losses_, seed_evals = self._train_loop(seed)
                losses.append(seed_losses_)
                evals.append(seed_evals)
            loss, ev = np.concatenate(losses), np.concatenate(evals, 1)
        else:
            loss, ev = self._train_stacked(mode)
        out = {"train_loss": loss, "evals": np.moveaxis(ev, 0, 1)}  # [seeds, evals, 3]
        out.update({k: np.concatenate(v) for k, v in self.stats.items()})
        return out

    def _batches(self, gen: torch.Generator, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randint(0, self.data["x_train"].shape[0], shape, generator=gen)

    def _train_loop(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """The textbook loop: nn.Sequential, clip_grad_norm_, optim.SGD, one seed."""
        a, p = self.args, self.point
        ws, bs = self.init(seed)
        layers: list[torch.nn.Module] = []
        for w, b in zip(ws, bs):
            linear = torch.nn.Linear(w.shape[1], w.shape[2])
            with torch.no_grad():
                linear.weight.copy_(w[0].T)
                linear.bias.copy_(b[0, 0])
            layers += [linear, ACTIVATION_MODULES[p["act"]]()]
        model = torch.nn.Sequential(*layers[:-1])
        opt = torch.optim.SGD(model.parameters(), lr=p["lr"])
        linears = [m for m in model if isinstance(m, torch.nn.Linear)]
        stacked = lambda: (
            [m.weight.detach().T[None] for m in linears],
            [m.bias.detach()[None, None] for m in linears],
        )
        gen = torch.Generator().manual_seed(7_000_003 * a.seed + seed)
        x, y = self.data["x_train"], self.data["y_train"]
        losses = torch.empty(a.steps)
        evals = [evaluate(*stacked(), self.data, p["act"])]
        self.measure(*stacked(), "init")
        for step in range(a.steps):
            idx = self._batches(gen, (a.batch_size,))
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if p["clip"] is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), p["clip"])
            opt.step()
            losses[step] = loss.detach()
            if (step + 1) % a.eval_every == 0:
                evals.append(evaluate(*stacked(), self.data, p["act"]))
        self.measure(*stacked(), "final")
        return losses.numpy()[None], torch.stack(evals).numpy()

    def _train_stacked(self, mode: str) -> tuple[np.ndarray, np.ndarray]:
        """All seeds at once: torch.func.vmap over a module, or batched matmuls."""
        a, p = self.args, self.point
        ws, bs = self.init_stacked()
        grad_fn = vmap_grad(p["act"]) if mode == "vmap" else None
        gen = torch.Generator().manual_seed(7_000_003 * a.seed)
        x, y = self.data["x_train"], self.data["y_train"]
        losses = torch.empty(a.steps, a.seeds)
        evals = [evaluate(ws, bs, self.data, p["act"])]
        self.measure(ws, bs, "init")
        for step in range(a.steps):
            idx = self._batches(gen, (a.seeds, a.batch_size))
            loss = sgd_step(ws, bs, x[idx], y[idx], p["act"], p["lr"], p["clip"], grad_fn)
            losses[step] = loss.detach()
            if (step + 1) % a.eval_every == 0:
                evals.append(evaluate(ws, bs, self.data, p["act"]))
        self.measure(ws, bs, "final")
        return losses.T.numpy(), torch.stack(evals).numpy()


def grid(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The configurations, in ``jaxstab sweep``'s order of axes."""
    return [
        {"depth": d, "width": w, "act": act, "init": init, "lr": lr, "clip": clip}
        for d in args.depths
        for w in args.widths
        for act in args.activations
        for init in args.inits
        for lr in args.lrs
        for clip in args.clips
    ]


def _ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",")]


def _floats(text: str) -> list[float]:
    return [float(t) for t in text.split(",")]


def _clips(text: str) -> list[float | None]:
    return [None if t.lower() == "none" else float(t) for t in text.split(",")]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The options of ``jaxstab sweep`` that the job uses, plus the seeds mode and threads."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.torch_sweep", description=__doc__)
    p.add_argument("--depths", type=_ints, required=True)
    p.add_argument("--widths", type=_ints, required=True)
    p.add_argument("--activations", type=lambda t: t.split(","), required=True)
    p.add_argument("--inits", type=lambda t: t.split(","), required=True)
    p.add_argument("--optimizers", choices=["sgd"], default="sgd")
    p.add_argument("--lrs", type=_floats, required=True)
    p.add_argument("--clips", type=_clips, default=[None])
    p.add_argument("--seeds", type=int, required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--eval-every", type=int, required=True)
    p.add_argument("--dataset", choices=["digits"], default="digits")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seeds-mode", choices=MODES, default="bmm")
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: the usable cores)"
    )
    args = p.parse_args(argv)
    bad = [a for a in args.activations if a not in ACTIVATIONS]
    bad += [i for i in args.inits if i not in INITS]
    if bad or args.steps % args.eval_every:
        p.error(f"unsupported {bad} or eval_every not dividing steps")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the job; prints the phase times as one JSON line."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
    t0 = time.perf_counter()
    x_train, y_train, x_test, y_test = (torch.from_numpy(a) for a in load_digits())
    data = {
        "x_train": x_train,
        "y_train": y_train,
        "x_eval": x_train[:EVAL_LIMIT],
        "y_eval": y_train[:EVAL_LIMIT],
        "x_test": x_test[:EVAL_LIMIT],
        "y_test": y_test[:EVAL_LIMIT],
        "x_diag": x_train[:DIAGNOSTIC_BATCH],
        "y_diag": y_train[:DIAGNOSTIC_BATCH],
    }
    t1 = time.perf_counter()
    rows: list[list[Any]] = []
    curves: dict[str, Any] = {}
    stats: dict[str, Any] = {}
    for i, point in enumerate(grid(args)):
        out = Config(point, args, data).train(args.seeds_mode)
        curves[f"{i}/train_loss"] = out.pop("train_loss")
        curves[f"{i}/evals"] = evals = out.pop("evals")
        stats.update({f"{i}/{k}": v for k, v in out.items()})
        for s in range(args.seeds):
            rows.append(
                [i, *point.values(), s, *evals[s, -1].tolist(), bool(np.isnan(evals[s]).any())]
            )
    t2 = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    header = "config,depth,width,activation,init,lr,clip,seed,final_train_loss,test_loss,"
    lines = [header + "test_accuracy,diverged"] + [",".join(map(str, r)) for r in rows]
    (args.out / "results.csv").write_text("\n".join(lines) + "\n")
    np.savez(args.out / "curves.npz", **curves)
    np.savez(args.out / "layer_stats.npz", **stats)
    t3 = time.perf_counter()
    seconds = {"import": _T_IMPORT, "data": t1 - t0, "train": t2 - t1, "write": t3 - t2}
    print(json.dumps({"seconds": seconds, "configs": len(curves) // 2, "mode": args.seeds_mode}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
