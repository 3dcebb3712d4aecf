"""Sweeps over cells x scales x seeds, on the local cores or any ``concurrent.futures.Executor``.

Each task (one cell, one scale, one seed) derives its model once per worker
process, draws its weights, runs :func:`~symrnn.decay.lyapunov.decay_profile`
and, on a short sequence, :func:`~symrnn.decay.gradients.gradient_by_lag`.
Tasks travel as plain data (cell names, or a picklable :class:`~symrnn.Cell`),
so a ``dask.distributed`` client's executor (``client.get_executor()``) runs the
same sweep on a cluster.
"""
from __future__ import annotations

import os
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field

import numpy as np

from ..errors import ParameterError, ShapeError, UnknownNameError
from .weights import check_init, check_scale

_MODELS = {}


@dataclass(frozen=True)
class Task:
    cell: object  # a built-in cell name or a Cell
    scale: float
    seed: int
    H: int
    D: int
    T: int
    k: int
    init: str = "pytorch"
    scale_by: str = "gain"
    inputs: str = "random"
    input_scale: float = 1.0
    h0: object = None
    grad_T: int = 50
    lags: tuple = None
    params: dict = None  # given weights (then scale and init are labels only)
    forget_bias: float = None  # the LSTM's b_f, set to this value (None: as drawn)

    @property
    def cell_name(self):
        return self.cell if isinstance(self.cell, str) else self.cell.name


@dataclass
class SweepResult:
    """Every task's :class:`DecayProfile` and :class:`GradientByLag`, in the order of the grid.

    Attributes
    ----------
    tasks : list
        The grid's points (cell, scale, seed).
    profiles : list of DecayProfile
    gradients : list of GradientByLag or None
    settings : dict
        The sweep's arguments.
    """

    tasks: list
    profiles: list
    gradients: list
    settings: dict = field(default_factory=dict)

    def rows(self):
        """Yield ``(task, profile, gradient_by_lag)`` for every point of the grid."""
        for task, prof, grad in zip(self.tasks, self.profiles, self.gradients):
            yield task, prof, grad


def model_for(cell, D, H):
    """The decay model of a cell (``loss="upstream"``), derived once per process."""
    from ..engine.cells import builtin_cell
    from ..models.model import Model

    key = (cell if isinstance(cell, str) else id(cell), D, H)
    if key not in _MODELS:
        _MODELS[key] = Model(builtin_cell(cell) if isinstance(cell, str) else cell, D=D, H=H, loss="upstream")
    return _MODELS[key]


def run_task(task: Task):
    """One point of a sweep: ``(DecayProfile, GradientByLag or None)``."""
    from .gradients import gradient_by_lag
    from .jacobian_stream import InputSource
    from .lyapunov import decay_profile
    from .weights import make_params

    model = model_for(task.cell, task.D, task.H)
    params = task.params if task.params is not None else make_params(model, task.init, task.scale, task.scale_by,
                                                                     task.seed, forget_bias=task.forget_bias)
    profile = decay_profile(model, params, task.T, k=task.k, inputs=task.inputs, input_scale=task.input_scale,
                            h0=task.h0, seed=task.seed, lags=task.lags)
    profile.meta.update(scale=task.scale, init=task.init, scale_by=task.scale_by, H=task.H, D=task.D)
    grad = None
    if task.grad_T:
        source = InputSource(task.inputs, task.grad_T, 1, task.D, task.seed, task.input_scale)
        h0 = None if task.h0 in (None, "zero") else task.h0
        if h0 == "random":
            from .lyapunov import initial_state

            h0 = initial_state(model, "random", 1, task.seed)
        grad = gradient_by_lag(model, params, source.chunk(0, task.grad_T), h0=h0, seed=task.seed)
    return profile, grad


def _exponents_asked(cell, k, H, D):
    """``k`` checked against the cell's state size at ``D``, ``H`` (default: the whole state; a state may
    have another size than ``H``: the LRU's output, a matrix memory)."""
    model = model_for(cell, D, H)
    size = sum(model.state_size(s) for s in model.state_names)
    kk = size if k is None else k
    if kk > size or kk < 0:
        raise ShapeError(f"k = {kk} exponents asked for, but the state of {cell!r} has size {size}; "
                         f"give 0 <= k <= {size}.")
    return int(kk)


def _run_tasks(tasks, executor, max_workers, progress):
    """Every task's ``(profile, gradient)``, in order: in this process for one worker, else on
    ``executor`` (default a process pool)."""
    results = [None] * len(tasks)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(tasks), desc="decay sweep", unit="run")
    workers = max_workers or os.cpu_count() or 1
    own = None
    try:
        if executor is None and (workers == 1 or len(tasks) == 1):
            for i, task in enumerate(tasks):
                results[i] = run_task(task)
                if bar is not None:
                    bar.update(1)
        else:
            if executor is None:
                own = executor = ProcessPoolExecutor(max_workers=min(workers, len(tasks)))
            futures = {executor.submit(run_task, task): i for i, task in enumerate(tasks)}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                if bar is not None:
                    bar.update(1)
    finally:
        if own is not None:
            own.shutdown()
        if bar is not None:
            bar.close()
    return results


def _has_forget_bias(cell):
    from ..engine.cells import builtin_cell

    c = builtin_cell(cell) if isinstance(cell, str) else cell
    return "b_f" in c.params and c.params["b_f"].shape == ("H",)


def _check_grid(cells, scales, seeds, T, k, H):
    if not cells:
        raise UnknownNameError("No cells to sweep; give at least one (e.g. ['rnn-tanh', 'lstm', 'gru']).")
    if not scales:
        raise ParameterError("No scales to sweep; give at least one scale >= 0.")
    for s in scales:
        check_scale(s)
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
        raise ShapeError(f"T must be an integer >= 1, got {T!r}.")
    if not seeds:
        raise ParameterError("No seeds; give at least one (seeds=[0]).")


def sweep(cells, scales, seeds=(0,), *, H=16, D=4, T=1000, k=None, init="pytorch", scale_by="gain",
          inputs="random", input_scale=1.0, h0=None, grad_T=50, lags=None, executor: Executor | None = None,
          max_workers=None, progress=True, params=None, forget_bias=None) -> SweepResult:
    """Decay profiles over ``cells x scales x seeds``.

    ``k``: Lyapunov exponents per run (default: the whole state, ``H`` per state).
    ``executor``: any ``concurrent.futures.Executor`` (a ``dask.distributed`` client's
    ``client.get_executor()`` included); default a process pool over the local cores
    (``max_workers``, default ``os.cpu_count()``; 1 runs in this process).
    ``progress``: a tqdm bar over finished tasks.
    ``params``: trained weights of the one cell given (``init`` is then a label, ``scales`` ``[1.0]``).
    ``forget_bias``: set the LSTM's ``b_f`` to this value (cells without ``b_f`` keep their draw).
    The other arguments are those of :func:`decay_profile` and :func:`make_params`; ``grad_T``
    is the length of the :func:`gradient_by_lag` analysis (0: none).

    Returns
    -------
    SweepResult

    Examples
    --------
    >>> from symrnn.decay import sweep
    >>> result = sweep(["rnn-tanh", "gru"], [0.5, 2.0], seeds=[0], H=4, T=400, grad_T=0,
    ...                max_workers=1, progress=False)
    >>> [(task.cell, task.scale) for task, profile, _ in result.rows()]
    [('rnn-tanh', 0.5), ('rnn-tanh', 2.0), ('gru', 0.5), ('gru', 2.0)]
    """
    from ..engine import cells as builtin

    if params is None:
        check_init(init, scale_by)
    elif len(cells if not isinstance(cells, str) else cells.split(",")) != 1:
        raise ParameterError("Given weights (params=...) belong to one cell; give exactly one cell.")
    cells = [c.strip() for c in cells.split(",")] if isinstance(cells, str) else list(cells)
    seeds = list(seeds)
    _check_grid(cells, scales, seeds, T, k, H)
    if forget_bias is not None:
        from .weights import check_forget_bias

        if not any(_has_forget_bias(c) for c in cells if not isinstance(c, str) or c in builtin.BUILTIN_CELLS):
            raise ParameterError(f"forget_bias={forget_bias!r}, but none of the cells {cells} has a forget-gate bias "
                                 f"b_f (an LSTM's); leave it out or add 'lstm'.")
        check_forget_bias(model_for("lstm", 1, 1), forget_bias)  # a finite number
    for c in cells:
        if isinstance(c, str) and c not in builtin.BUILTIN_CELLS:
            raise UnknownNameError(f"Unknown cell {c!r}; expected one of {sorted(builtin.BUILTIN_CELLS)} or a Cell.")
    tasks = [Task(c, float(s), int(seed), H, D, int(T), _exponents_asked(c, k, H, D), init, scale_by, inputs,
                  float(input_scale), h0, int(min(grad_T, T)) if grad_T else 0,
                  tuple(int(x) for x in lags) if lags is not None else None, params,
                  forget_bias if _has_forget_bias(c) else None)
             for c in cells for s in scales for seed in seeds]
    results = _run_tasks(tasks, executor, max_workers, progress)
    settings = dict(H=H, D=D, T=T, k=k, init=init, scale_by=scale_by, inputs=inputs, input_scale=input_scale,
                    forget_bias=forget_bias,
                    seeds=[int(s) for s in seeds], scales=[float(s) for s in scales],
                    cells=[c if isinstance(c, str) else c.name for c in cells], grad_T=grad_T)
    return SweepResult(tasks, [r[0] for r in results], [r[1] for r in results], settings)
