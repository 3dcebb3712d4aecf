"""float32 work inside float64 code: gradients returned as float64 arrays whose errors are at float32
level, from a forward that is exact to float64.

A forward that itself computes in float32 makes the code a float32 function, and it is judged with
float32 rounding (``u = 2**-24``; the report's verdict says "RIGHT TO float32 ONLY" when it passes).
A backward that computes in float32 (an ``astype(np.float32)``, a float32 array or constant mixed
in) for a forward exact to float64 gives a float64 function's gradients at float32 precision: not
exact, and not a wrong derivative either.  When every failing case is within the float32 error
model's tolerances, the report says that, instead of placing a mistake that is not there."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from . import judge as J
from .assess import judge_case


@dataclass(frozen=True)
class Float32Rounding:
    """The user's float64 gradients differ from the exact ones by float32 rounding, and no more."""

    relative: float  # the largest error of a gradient, relative to its largest exact entry
    cases: int  # the failing cases, all within float32's tolerances

    def to_json(self) -> dict:
        return {"kind": "precision", "precision": "float32", "relative_error": self.relative, "text": self.short()}

    def short(self) -> str:
        """What the verdict line says after ``DIFFERS ONLY BY``."""
        return "BY float32 ROUNDING: float64 gradients computed at float32 precision"

    def sentence(self) -> str:
        cases = "the failing case is" if self.cases == 1 else f"all {self.cases} failing cases are"
        return (f"the gradients are float64 arrays, but their errors are at float32 level (up to {self.relative:.1e} "
                f"of the largest entry, far above float64 rounding): {cases} within the tolerances of the float32 "
                f"error model (u = 2**-24) and outside float64's, while the forward is exact to float64; the backward computes in float32 somewhere (an astype(np.float32), a "
                f"float32 array or constant mixed in); a float64 function's gradient computed at float32 precision is "
                f"not exact: compute it in float64, or return float32 arrays to have the code judged as float32 code")

    def declaration(self):
        """Nothing to declare: the report says what to change."""
        return None


#: a gradient whose error exceeds this share of its largest entry is no rounding (float32 rounds to ~1e-7)
COARSE = 1e-3


def explain_precision(adapter, failing):
    """The :class:`Float32Rounding` that explains every failing case judged with float64 rounding, or None."""
    errors = [_relative_error(run, ex) for _, run, ex, _, _ in failing]
    if any(d.name != "float64" for _, _, _, d, _ in failing) or max(errors) > COARSE:
        return None  # a gross mistake: no float32 tolerances to measure
    for problem, run, ex, _, _ in failing:
        tol32 = J.perturbation_tolerance(adapter.model, problem, ex, J.U32)
        if not all(v.ok for v in judge_case(adapter, run, replace(ex, tol=tol32))):
            return None
    return Float32Rounding(max(errors), len(failing))


def _relative_error(run, ex) -> float:
    """The largest error of any gradient the user returned, relative to that gradient's largest entry."""
    worst = 0.0
    with np.errstate(all="ignore"):
        for k, user in run.grads.items():
            size = float(np.max(np.abs(ex.grads[k]), initial=0.0)) if k in ex.grads else 0.0
            error = np.abs(np.asarray(user, dtype=float) - ex.grads[k]) if k in ex.grads else np.zeros(1)
            worst = max(worst, float(np.max(error, initial=0.0)) / size if size > 0 else
                        (0.0 if not np.any(error) else np.inf))
    return worst if np.isfinite(worst) else np.inf
