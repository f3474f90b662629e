"""Sizes of every section: the full run, and ``--tiny`` for a smoke test of a few seconds."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Settings:
    """What each section measures; :func:`full` and :func:`tiny` are the two presets.

    Attributes:
      tiny: whether these are the smoke-test sizes (numbers then mean nothing).
      repeats: timed samples per measurement, after a warm-up.
      throughput_repeats: rounds of the throughput section (each call is a
        whole training run of several seconds).
      compile_depths: hidden-layer counts of the compile ladder (first and
        last are the goal's pair).
      compile_width: hidden width of the compile ladder.
      depth: hidden layers of the throughput and utilization networks.
      width: hidden width of the throughput network.
      batch: examples per step.
      seeds: seeds trained at once (vmapped).
      loop_seeds: seeds timed of the Python loops over seeds (their throughput
        does not depend on the count: they run seeds one after the other).
      steps: training steps of the throughput runs.
      lr: SGD learning rate.
      clip: global-norm clipping threshold.
      util_widths: hidden widths of the utilization section (the goal is on 256).
      util_call_gflop: matmul GFLOP per timed call of the utilization section
        (sets the steps per call: several at width 128, one at 512).
      peak_n: size of the square float32 matmul that measures the machine's peak.
      memory_depth: hidden layers of the memory section's network.
      memory_width: its hidden width.
      sweep_args: arguments of the timed ``jaxstab sweep`` (empty: ``make run``'s defaults).
      sweep_repeats: rounds of the sweep section (each run takes minutes at full size).
      time_to_result_repeats: rounds of the time-to-result section (every
        process once per round; a round takes about 12 minutes at full size).
      dispatch_repeats: rounds of the dispatch section (four processes a round).
    """

    tiny: bool = False
    repeats: int = 5
    throughput_repeats: int = 3
    compile_depths: tuple[int, ...] = (8, 32, 128, 512, 1024)
    compile_width: int = 128
    depth: int = 8
    width: int = 128
    batch: int = 128
    seeds: int = 32
    loop_seeds: int = 8
    steps: int = 200
    lr: float = 0.1
    clip: float = 1.0
    util_widths: tuple[int, ...] = (128, 256, 512)
    util_call_gflop: float = 12.0
    peak_n: int = 2048
    memory_depth: int = 1024
    memory_width: int = 512
    sweep_args: tuple[str, ...] = ()
    sweep_repeats: int = 1
    time_to_result_repeats: int = 3
    dispatch_repeats: int = 3


def full(repeats: int | None = None) -> Settings:
    """The sizes of the issue: what BENCHMARKS.md reports."""
    if repeats is None:
        return Settings()
    return Settings(
        repeats=repeats,
        throughput_repeats=repeats,
        sweep_repeats=repeats,
        time_to_result_repeats=repeats,
        dispatch_repeats=repeats,
    )


def tiny(repeats: int | None = None) -> Settings:
    """Sizes that run in seconds, so that the test suite keeps the code from rotting."""
    return Settings(
        tiny=True,
        repeats=2 if repeats is None else repeats,
        throughput_repeats=2 if repeats is None else repeats,
        time_to_result_repeats=1 if repeats is None else repeats,
        dispatch_repeats=1 if repeats is None else repeats,
        compile_depths=(2, 8),
        compile_width=32,
        depth=2,
        width=32,
        batch=32,
        seeds=4,
        loop_seeds=2,
        steps=10,
        util_widths=(32,),
        util_call_gflop=0.05,
        peak_n=256,
        memory_depth=16,
        memory_width=64,
        sweep_args=(
            *("--depths", "2", "--widths", "16", "--activations", "relu"),
            *("--inits", "he_normal", "--seeds", "2", "--steps", "10", "--eval-every", "10"),
        ),
    )
