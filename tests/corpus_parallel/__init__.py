"""Parallel forms (associative, chunked and log-space scans) of minGRU, minLSTM, LRU and S6, correct and with
planted mistakes, for the verifier's forward check (tests/test_parallel_forms.py)."""
from .layers import BUGS, LAYERS, make  # noqa: F401
