"""The values of ``symrnn verify``'s options (``--sizes``, ``--truncation``, ``--clip``), read from their text:
a value that does not parse is a usage error that says what to write."""
from __future__ import annotations

from ..errors import UnknownNameError


def option_sizes(text) -> dict:
    """``--sizes D=3,H=4``: the sizes by name."""
    sizes = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        if key.strip() not in ("D", "H", "K", "N") or not value.strip().isdigit():
            raise UnknownNameError(f"--sizes {text!r}: give KEY=integer pairs for D, H, K, N (e.g. D=3,H=4).")
        sizes[key.strip()] = int(value)
    return sizes


def option_truncation(text):
    """``--truncation K`` or ``K1,K2``: declared truncated BPTT (None: none)."""
    if not text:
        return None
    parts = text.split(",")
    if len(parts) > 2 or not all(p.strip().isdigit() for p in parts):
        raise UnknownNameError(f"--truncation {text!r}: give K or K1,K2 (positive integers).")
    return tuple(int(p) for p in parts) if len(parts) == 2 else int(parts[0])


def option_clip(text):
    """``--clip KIND=C[,states|,EPS]``: declared gradient clipping (None: none)."""
    if not text:
        return None
    from ..models.clipping import Clipping

    kind, _, value = text.partition("=")
    value, _, more = value.partition(",")  # value=C,states (dh0 clipped too); global-norm=C,EPS
    try:
        threshold = float(value)
        extra = {} if not more else {"states": True} if more.strip() == "states" else {"eps": float(more)}
    except ValueError:
        raise UnknownNameError(f"--clip {text!r}: give KIND=THRESHOLD, e.g. value=5 or global-norm=1 (value=C,states: "
                               f"the initial states' gradients too; global-norm=C,EPS: c / (norm + EPS)).") from None
    return Clipping(kind.strip(), threshold, **extra)
