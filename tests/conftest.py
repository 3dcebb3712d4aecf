"""Shared test configuration: Hypothesis profiles and a float64 PyTorch oracle.

Profiles (choose with ``HYPOTHESIS_PROFILE``, default ``dev``):

* ``ci``  -- derandomized (the same examples every run), 25 examples per
  property, no deadline, failing examples printed as reproducible blobs.
* ``dev`` -- Hypothesis defaults (random, 100 examples) without a deadline:
  generated code is compiled on first use, which makes first calls slow.

The on-disk cache of generated code (:mod:`symrnn.cache`) goes to a fresh
folder per test process, so the suite neither reads nor fills the user's
``~/.cache/symrnn``.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    print_blob=True,
    deadline=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
os.environ["SYMRNN_CACHE_DIR"] = tempfile.mkdtemp(prefix="symrnn-test-cache-")


class Torch64:
    """PyTorch in float64 for exact-gradient oracles.

    ``T.tensor(a, grad=True)`` makes a float64 leaf tensor from a NumPy array,
    ``T.numpy(t)`` gives it back; ``T.torch`` is the module itself.
    """

    def __init__(self, torch):
        self.torch = torch

    def tensor(self, array, grad=False):
        t = self.torch.tensor(np.asarray(array, dtype=np.float64), dtype=self.torch.float64)
        return t.requires_grad_(grad)

    def zeros(self, *shape, grad=False):
        return self.torch.zeros(*shape, dtype=self.torch.float64).requires_grad_(grad)

    @staticmethod
    def numpy(t):
        return t.detach().cpu().numpy()


@pytest.fixture(scope="session")
def torch64():
    """A :class:`Torch64` helper; skips the test when torch is not installed.

    Session-scoped (so Hypothesis tests may use it): sets the default dtype to
    float64 and one intra-op thread (small problems; bit-stable sums) for the
    session and restores both afterwards.
    """
    # In CI torch is installed by `make test`: a missing torch is a failure there, not a skip.
    torch = __import__("torch") if os.environ.get("CI") else pytest.importorskip("torch")
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    try:
        yield Torch64(torch)
    finally:
        torch.set_default_dtype(dtype)
        torch.set_num_threads(threads)
