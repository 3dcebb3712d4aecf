"""Freed memory is kept for reuse while generated code runs (:mod:`symrnn.engine.memory`): a second
gradient of S6 touches no new page (it took 5,000 page faults a call), and ``SYMRNN_MALLOC=system``
leaves glibc's allocator as it is.  Counted in a fresh process each (the settings are per process)."""
import subprocess
import sys

import pytest

_CHILD = r"""
import resource, numpy as np, symrnn as sr
from symrnn.engine.cells_matrix import s6
from symrnn.engine import memory
model = sr.Model(s6(16), D=8, H=128, loss="upstream").compile()
params = model.init_params(seed=0)
rng = np.random.default_rng(0)
X, G = rng.normal(size=(20, 32, 8)), rng.normal(size=(20, 32, 128))
for _ in range(3):
    model.loss_and_grads(params, X, G)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    model.loss_and_grads(params, X, G)
print(memory.keep_freed_memory(), (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 5)
"""


def faults(env_value):
    import os
    env = dict(os.environ)
    env.pop("SYMRNN_MALLOC", None)
    if env_value is not None:
        env["SYMRNN_MALLOC"] = env_value
    out = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, env=env, check=True)
    kept, count = out.stdout.split()
    return kept == "True", int(count)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator: Linux only")
def test_a_gradient_reuses_freed_memory_unless_told_not_to():
    kept, count = faults(None)
    if not kept:
        pytest.skip("no glibc here: nothing is changed")
    assert count < 50, count  # the temporaries' pages are reused (a handful of Python's own faults remain)
    kept, count = faults("system")
    assert not kept and count > 500, count  # glibc's defaults: the temporaries' pages are faulted in again

