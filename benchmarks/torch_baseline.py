"""The PyTorch baseline: a Python loop over seeds of eager training steps.

Optional (the ``bench`` extra): :func:`available` says whether torch imports.
Same math as the JAX programs, from the same initial weights: ReLU, mean
cross-entropy, ``clip_grad_norm_`` then ``torch.optim.SGD``, minibatches of
indices drawn with replacement every step (by torch's own generator). On a
GPU machine it runs on CUDA when torch can.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np


def available() -> bool:
    """Whether torch can be imported."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def device(prefer_gpu: bool) -> str:
    """``"cuda"`` when asked for and available, else ``"cpu"``."""
    import torch

    return "cuda" if prefer_gpu and torch.cuda.is_available() else "cpu"


Layers = list[tuple[np.ndarray, np.ndarray]]


class TorchLoop:
    """Trains one network per seed, one after the other; a call returns the losses.

    Args:
      x: float32 features ``[n, d_in]``.
      y: int labels ``[n]``.
      batch: examples per step.
      lr: SGD learning rate.
      clip: global-norm threshold of ``clip_grad_norm_``.
      device: a torch device name.
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        batch: int,
        lr: float,
        clip: float,
        device: str = "cpu",
    ) -> None:
        import torch

        self.torch = torch
        self.device = device
        self.x = torch.from_numpy(np.array(x, np.float32)).to(device)
        self.y = torch.from_numpy(np.array(y, np.int64)).to(device)
        self.batch, self.lr, self.clip = batch, lr, clip

    def _model(self, layers: Layers) -> Any:
        """``nn.Sequential`` of Linear + ReLU holding the given ``(w [in, out], b)``."""
        nn = self.torch.nn
        modules: list[Any] = []
        for w, b in layers:
            linear = nn.Linear(*w.shape)
            with self.torch.no_grad():
                linear.weight.copy_(self.torch.from_numpy(np.ascontiguousarray(w.T)))
                linear.bias.copy_(self.torch.from_numpy(np.array(b)))
            modules += [linear, nn.ReLU()]
        return nn.Sequential(*modules[:-1]).to(self.device)

    def __call__(self, initial: list[Layers], steps: int) -> np.ndarray:
        """Trains from each seed's initial layers; returns the losses ``[seeds, steps]``."""
        torch = self.torch
        n = self.x.shape[0]
        losses = torch.empty((len(initial), steps), device=self.device)
        for seed, layers in enumerate(initial):
            gen = torch.Generator(device=self.device).manual_seed(seed)
            model = self._model(layers)
            opt = torch.optim.SGD(model.parameters(), lr=self.lr)
            for i in range(steps):
                idx = torch.randint(0, n, (self.batch,), generator=gen, device=self.device)
                loss = torch.nn.functional.cross_entropy(model(self.x[idx]), self.y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), self.clip)
                opt.step()
                losses[seed, i] = loss.detach()
        return losses.cpu().numpy()


def fastest_threads(loop: TorchLoop, initial: list[Layers], steps: int = 20) -> int:
    """Sets and returns torch's intra-op thread count that runs ``steps`` steps faster.

    Tries one thread and torch's default, alternately, three times each, and
    keeps the better of the fastest trials. On a machine that other jobs load,
    torch's OpenMP threads spin waiting for each other and the default can be
    ten times slower than one thread; on an idle machine the default may win.
    """
    import torch

    default = torch.get_num_threads()
    best: dict[int, float] = {}
    for _ in range(3):
        for threads in sorted({1, default}):
            torch.set_num_threads(threads)
            loop(initial[:1], 2)  # Warm-up at this thread count.
            start = time.perf_counter()
            loop(initial[:1], steps)
            best[threads] = min(best.get(threads, math.inf), time.perf_counter() - start)
    chosen = min(best, key=best.__getitem__)
    torch.set_num_threads(chosen)
    return chosen
