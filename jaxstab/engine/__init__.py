"""The public engine: many runs of any model's init, loss and optimizer in one program.

>>> from jaxstab import engine
>>> runs = engine.grid(16, lr=[0.1, 0.03])      # 32 runs: 16 seeds x 2 learning rates
>>> # result = engine.train(init, loss, optimizer, data, runs, steps=500, batch_size=128)

See :func:`train` for the callables' signatures and the reproducibility guarantee.
"""

from jaxstab.engine._blocks import BLOCK_SIZE as BLOCK_SIZE
from jaxstab.engine._runs import as_runs as as_runs
from jaxstab.engine._runs import grid as grid
from jaxstab.engine._runs import num_runs as num_runs
from jaxstab.engine._runs import run_at as run_at
from jaxstab.engine._train import TrainResult as TrainResult
from jaxstab.engine._train import train as train

__all__ = ["BLOCK_SIZE", "TrainResult", "as_runs", "grid", "num_runs", "run_at", "train"]
