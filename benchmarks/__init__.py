"""Speed and memory benchmarks of jaxstab, against baselines measured side by side.

Run ``python -m benchmarks`` (``make bench``) from the repository root: it
measures on whatever machine it runs and writes BENCHMARKS.md. Sections:

* ``compile`` (:mod:`benchmarks.compile_time`): compile time against depth.
* ``throughput`` (:mod:`benchmarks.throughput`): training many seeds.
* ``utilization`` (:mod:`benchmarks.utilization`): FLOP/s of a training step.
* ``memory`` (:mod:`benchmarks.memory`): peak memory with and without remat.
* ``sweep`` (:mod:`benchmarks.sweep_time`): the main job, ``jaxstab sweep``, end to end.
* ``gpu`` (:mod:`benchmarks.gpu`): filled in on a GPU machine.

Every goal is a ratio of two things measured in the same process, so the
report means something on any machine. ``--tiny`` shrinks every size so the
test suite can run the whole thing in seconds.
"""
