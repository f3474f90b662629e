"""set_cpu_devices: one JAX CPU device per core, set before the backend starts."""

import os
import subprocess
import sys
import textwrap

import pytest

import jaxstab as js


def _python(script, **env):
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**{k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}, **env},
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_sets_the_count_before_the_backend_starts_and_refuses_after():
    out = _python(
        """
        import jax, jaxstab
        print(jaxstab.set_cpu_devices(3), len(jax.devices()))
        print(jaxstab.set_cpu_devices(3))  # the same count again: accepted
        try:
            jaxstab.set_cpu_devices(2)
        except RuntimeError as e:
            print("refused" if "already initialized with 3" in str(e) else e)
        """
    )
    assert out == ["3", "3", "3", "refused"]


def test_default_is_one_device_per_usable_core():
    out = _python("import jax, jaxstab; jaxstab.set_cpu_devices(); print(len(jax.devices()))")
    assert int(out[0]) == len(os.sched_getaffinity(0)) == js.devices.usable_cores()


def test_an_xla_flag_in_the_environment_wins():
    out = _python(
        "import jax, jaxstab; print(jaxstab.set_cpu_devices(4), len(jax.devices()))",
        XLA_FLAGS="--xla_force_host_platform_device_count=3",
    )
    assert out == ["3", "3"]


@pytest.mark.parametrize("count", [0, -2, 1.5, True, "2"])
def test_bad_count(count):
    with pytest.raises(ValueError, match="count must be a positive int or None"):
        js.set_cpu_devices(count)
