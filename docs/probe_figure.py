"""Draws docs/figures/probe_flax.png: the README's flax model, measured q against mean field.

Run: ``.venv/bin/python docs/probe_figure.py`` (needs the dev extra for flax).
"""

from pathlib import Path

import flax.linen as nn
import jax
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import jaxstab as js


class MLP(nn.Module):  # tanh, LeCun-normal weights (flax's default), zero biases
    depth: int = 16

    @nn.compact
    def __call__(self, x):
        for _ in range(self.depth):
            x = nn.tanh(nn.Dense(256)(x))
        return nn.Dense(10)(x)


def main() -> None:
    model = MLP()
    x = jax.random.normal(jax.random.key(0), (512, 64))
    compare = jax.jit(lambda v: js.probe.theory_comparison(model.apply, v, x))
    seeds = [compare(model.init(jax.random.key(s), x)) for s in range(8)]
    measured = np.stack([np.asarray(c.measured) for c in seeds])
    predicted = np.stack([np.asarray(c.predicted) for c in seeds])
    layers = np.arange(1, measured.shape[1] + 1)
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.semilogy(layers, measured.T, color="tab:blue", alpha=0.35, lw=1)
    ax.semilogy(
        layers, np.median(measured, 0), color="tab:blue", lw=2, label="measured q (8 seeds)"
    )
    ax.semilogy(layers, predicted.mean(0), "k--", lw=1.5, label="mean-field prediction")
    ax.set_xlabel("layer (flax Dense_i)")
    ax.set_ylabel("q = mean z²")
    ax.set_title("A flax tanh MLP at LeCun init: q decays like 1/(2l)")
    ax.legend()
    path = Path(__file__).parent / "figures" / "probe_flax.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    print(path)


if __name__ == "__main__":
    main()
