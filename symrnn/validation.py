"""Argument checks with messages that name the argument, the expectation and a fix."""
from __future__ import annotations

import numpy as np

from .errors import NonFiniteError, ParameterError, ShapeError, UnknownNameError


def check_count(name: str, value, least: int = 1) -> int:
    """``value`` as an int, refused (:class:`ShapeError`) unless an integer (not a bool) ``>= least``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < least:
        raise ShapeError(f"{name} must be {'a positive integer' if least == 1 else f'an integer >= {least}'}, "
                         f"got {value!r}.")
    return int(value)


def look_up(table: dict, name, what: str):
    """``table[name]``, or an :class:`UnknownNameError` naming the ``what`` and every known name."""
    try:
        return table[name]
    except KeyError:
        raise UnknownNameError(f"Unknown {what} {name!r}; expected one of {sorted(table)}.") from None


def as_float_array(value, name: str, dtype=None) -> np.ndarray:
    """``value`` as a real floating-point array: refuses None, text, objects, complex numbers, NaN/inf."""
    if value is None:
        raise ShapeError(f"{name} is None; expected an array of real numbers.")
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise ShapeError(f"{name} must be an array of real numbers ({exc}).") from None
    if np.issubdtype(array.dtype, np.complexfloating):
        raise ShapeError(f"{name} holds complex numbers ({array.dtype}); symrnn computes with real numbers: "
                         f"pass the real part (x.real) if that is what you mean.")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ShapeError(f"{name} has dtype {array.dtype}; expected an array of real numbers "
                         f"(got {type(value).__name__}).")
    try:
        if dtype is not None:
            array = array.astype(dtype, copy=False)
        elif not np.issubdtype(array.dtype, np.floating):
            array = array.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ShapeError(f"{name} must be an array of real numbers ({exc}).") from None
    check_finite(array, name)
    return array


def check_finite(array: np.ndarray, name: str) -> None:
    if np.issubdtype(array.dtype, np.number) and not np.all(np.isfinite(array)):
        bad = np.argwhere(~np.isfinite(array))[0]
        raise NonFiniteError(
            f"{name} contains NaN or infinity (first at index {tuple(int(i) for i in bad)}, "
            f"value {array[tuple(bad)]}); clean or mask the data before calling."
        )


def check_shape(array: np.ndarray, expected: tuple, name: str, meaning: str) -> None:
    if array.shape != tuple(expected):
        raise ShapeError(f"{name} has shape {array.shape}; expected {tuple(expected)} ({meaning}).")


def check_param_names(params: dict, expected: dict, what: str = "params",
                      hint: str = "model.init_params(seed) makes a valid dict") -> None:
    """``params`` has exactly the keys of ``expected``; ``what`` names the dict in the message
    (``params``, or the direction ``vector`` of a Hessian-vector product)."""
    if not isinstance(params, dict):
        raise ParameterError(f"{what} must be a dict of arrays, got {type(params).__name__}.")
    missing = [k for k in expected if k not in params]
    extra = [k for k in params if k not in expected]
    if missing or extra:
        raise ParameterError(
            f"the keys of {what} do not match the model: missing {missing}, unexpected {extra}; "
            f"expected exactly {list(expected)} ({hint})."
        )


def check_float_params(params: dict, shapes: dict, meaning: str) -> tuple:
    """``params`` (their keys checked) as real arrays of one dtype, float64 or float32, each of its shape
    in ``shapes`` (``meaning`` says where the shapes come from); returns ``(params, dtype)``."""
    params = {k: as_float_array(v, f"params[{k!r}]") for k, v in params.items()}
    by_dtype = {}
    for k, v in params.items():
        by_dtype.setdefault(v.dtype, []).append(k)
    if len(by_dtype) > 1:
        mix = "; ".join(f"{dt}: {names}" for dt, names in by_dtype.items())
        raise ShapeError(f"params mix dtypes ({mix}); give every parameter one dtype, float64 or float32.")
    dtype = next(iter(by_dtype), np.dtype(np.float64))  # a cell without parameters computes in float64
    if dtype not in (np.float64, np.float32):
        raise ShapeError(f"parameters must be float64 or float32, got {dtype}.")
    for k, shape in shapes.items():
        check_shape(params[k], shape, f"params[{k!r}]", meaning)
    return params, dtype
