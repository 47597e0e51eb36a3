"""Time-to-accuracy harness: skmultilogit against scikit-learn's LogisticRegression.

The entry scripts (``run_benchmarks.py``, ``bench_digits.py``) only pick
problems and a default output path; everything below is shared.

Both ``skmultilogit.MultinomialLogitClassifier`` and ``LogisticRegression``
(multinomial for more than two classes) minimise the same objective,

.. math::

    F(W, b) = C \\sum_i s_i \\, (-\\log P_{i, y_i}) + \\tfrac12 \\lVert W \\rVert_F^2,

so their fits can be compared on one scale: the relative objective gap
``(F - f*) / |f*|`` to a reference optimum ``f*``, with ``F`` evaluated by
``skmultilogit.loss_gradient`` for the coefficients of either library.
Where cyanure is installed (the ``benchmarks`` extra) its multinomial
solvers join the ladder on the same objective (``_cyanure``: ``lambda =
1 / (C n)``, intercept unpenalised), judged by the same gap. Its fits run in
a spawned child process (one per problem, :class:`IsolatedRuns`), so that
a crash in its compiled code costs that run, listed as crashed, and not
the whole benchmark. The summary
gives the fastest run of each library to a gap of ``1e-8`` and to ``1e-4``
(a prediction-grade fit).

What is measured
----------------
Runs
    Every solver of both libraries (ours: ``lbfgs``, ``newton-cg``,
    ``newton-cholesky``; LogisticRegression: ``lbfgs``, ``newton-cg``,
    ``newton-cholesky``, ``sag``, ``saga``) over a ladder of ``tol`` values, ``C = 1``, plus each
    class's default constructor. ``max_iter`` is 10 000 (1 000 epochs for
    SAG/SAGA) so that ``tol``, not ``max_iter``, ends the ladder runs.
Per run
    The median wall time of ``repeats`` fits after one untimed warm-up fit,
    the iteration count, the relative gap, the test accuracy and whether a
    ``ConvergenceWarning`` was raised (silenced while timing, but recorded).
Reference optimum ``f*``
    The smaller training objective of two tight fits at ``tol = 1e-12``:
    ours with ``solver="newton-cg"``, and ``LogisticRegression`` with
    ``solver="newton-cholesky"``, or with ``solver="newton-cg"`` where
    newton-cholesky is skipped (see below; e.g. the sparse problem). The JSON
    output records both objectives and which fits were used.

Memory
    Separately, one untimed fit per solver at its default ``tol`` (and each
    class's default constructor) under ``tracemalloc``: the peak of the bytes
    Python and numpy allocate during ``fit``, above what was allocated before
    it, against the size of X (``data + indices + indptr`` when sparse). This
    is the memory a fit adds on top of the data. BLAS's own work buffers are
    not seen (a fixed few MB, not growing with X).

Why time-to-gap
---------------
``tol`` means different things in different solvers (a projected gradient
norm for L-BFGS-B, a scaled gradient norm or a step size for the Newton
solvers, a change in coefficients for SAG/SAGA), and the objectives are
scaled differently inside each library. "Time at the default ``tol``"
therefore compares fits of unequal accuracy. Instead the ladder of ``tol``
values traces each solver's time/accuracy curve (the plot: gap against time,
log-log, one line per solver, as in benchopt), and the summary reports the
fastest run of each library that reached a gap of at most ``1e-8``. The time
ratio in that summary is computed from times measured in the same process, on
the same machine, in the same invocation.

Why medians after a warm-up
---------------------------
The first fit pays for imports, page faults and thread-pool start-up. Shared
machines are noisy; the median of several fits is far less sensitive to a
stray slow fit than the mean or a single measurement. A run whose warm-up fit
shows that ``repeats`` fits would exceed ``--max-seconds-per-run`` is timed
fewer times (possibly only by its warm-up fit, marked ``*`` in the table); the
JSON output records how many fits were timed.

The best configuration for the peer
-----------------------------------
Every configuration runs at each thread setting of ``--blas-threads``
(default ``1 0``): its fits inside ``threadpoolctl.threadpool_limits(1)``,
then with the libraries' own defaults (all cores), and the summaries take
each library's fastest run, so each is judged at its best setting. On the
digits, multi-threaded BLAS slows ``LogisticRegression`` down badly (on 2
cores: seconds instead of tens of milliseconds per fit), so one thread is
its best setting there; on the large synthetic problems (measured on a
2-core machine shared with another process) two threads made its L-BFGS
1.5-2x slower and its newton-cg 10-20 % faster. This package runs the row
blocks of a large pass in threads of its own, as many as BLAS may use
(``skmultilogit._threads``), so its best setting there is all cores. The
main job (``bench_digits.py``) runs at one thread only. The effective
thread settings are recorded with ``threadpoolctl.threadpool_info()``.

Each LogisticRegression solver is run at every ``tol`` of the ladder and the
summary takes its fastest run that reached the target, so the peer is not
judged at a setting that suits it badly.

Skipped runs
------------
``LogisticRegression(solver="newton-cholesky")`` builds and factorises the
dense Hessian of all ``K (d + 1)`` parameters: ``(K (d + 1))^2`` entries and
about ``K^2 / 2`` weighted products ``X^T D X`` per Newton step. It is skipped
where that Hessian would exceed :data:`MAX_HESSIAN_ENTRIES` (the sparse
problem: 10^10 entries, 80 GB), and in ``--quick`` mode wherever one Newton
step would cost more than :data:`QUICK_MAX_NEWTON_FLOPS` (all but the digits).
SAG/SAGA on the raw digits are skipped unless ``--include-slow``: on unscaled
features they stop far from the optimum after 1 000 epochs and seconds per
fit, which says nothing new. Every skip is listed in the output.
"""

import argparse
import concurrent.futures
import contextlib
import faulthandler
import functools
import json
import math
import multiprocessing
import os
import platform
import statistics
import sys
import time
import tracemalloc
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy
import scipy.sparse as sp
import sklearn
import threadpoolctl
from _cv_benchmark import cv_report, run_cv_benchmark
from _cv_benchmark import n_runs as cv_runs
from _cyanure import (
    CYANURE,
    CYANURE_QUICK_SOLVERS,
    CYANURE_SOLVERS,
    CyanureMultinomial,
)
from _cyanure import available as cyanure_available
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

import skmultilogit
from skmultilogit import MultinomialLogitClassifier, loss_gradient

C = 1.0
GAP_TARGET = 1e-8
# A prediction-grade fit: the summary also reports the fastest run to this gap.
COARSE_GAP = 1e-4
GAP_FLOOR = 1e-16  # gaps are clipped to this in the plot
TOLS = (1e-2, 1e-4, 1e-6, 1e-8)
QUICK_TOLS = (1e-4, 1e-8)
LADDER_MAX_ITER = 10_000
STOCHASTIC_MAX_ITER = 1_000  # sag/saga: one iteration is one epoch
REFERENCE_TOL = 1e-12
REFERENCE_MAX_ITER = 1_000

OURS = "skmultilogit"
SKLEARN = "sklearn"
LIBRARIES = (OURS, SKLEARN, CYANURE)
OUR_SOLVERS = ("lbfgs", "newton-cg", "newton-cholesky")
LR_SOLVERS = ("lbfgs", "newton-cg", "newton-cholesky", "sag", "saga")
LR_QUICK_SOLVERS = ("lbfgs", "newton-cg", "newton-cholesky")
STOCHASTIC_SOLVERS = ("sag", "saga")
# Dense Hessian of LogisticRegression's newton-cholesky: at most 200 MB of
# float64, whose Cholesky factorisation alone takes seconds on one core.
MAX_HESSIAN_ENTRIES = 25_000_000
# --quick: newton-cholesky only where one Newton step costs at most this
# (the digits: 4e8; the quick synthetic problems: 4e9 and more, seconds per fit).
QUICK_MAX_NEWTON_FLOPS = 1e9
# SAG/SAGA converge very slowly on unscaled features: within 1000 epochs they
# stop far from the optimum after seconds per fit, which says nothing new.
SLOW_RUNS = {("raw", SKLEARN, solver) for solver in STOCHASTIC_SOLVERS}

TABLE_COLUMNS = (
    "problem",
    "library",
    "solver",
    "tol",
    "threads",
    "time_s",
    "iterations",
    "gap",
    "test_acc",
    "warned",
)


# --------------------------------------------------------------------------
# Objective, skipped runs and reference optimum
# --------------------------------------------------------------------------


def objective(estimator, X, y, C):
    """Value of the penalised multinomial objective at a fitted model's coefficients."""
    classes, y_index = np.unique(y, return_inverse=True)
    if not np.array_equal(estimator.classes_, classes):
        raise ValueError("estimator.classes_ does not match the sorted labels of y")
    coef = np.asarray(estimator.coef_, dtype=np.float64)
    intercept = np.asarray(estimator.intercept_, dtype=np.float64)
    loss, _, _ = loss_gradient(coef, intercept, X, y_index, C=C)
    return float(loss)


def relative_gap(value, f_star):
    """Relative objective gap ``(value - f_star) / |f_star|``."""
    return (value - f_star) / abs(f_star)


def newton_cholesky_cost(problem):
    """Size of LogisticRegression newton-cholesky's Hessian and flops per Newton step.

    Returns ``(entries, flops)``: the Hessian has ``m^2`` entries for
    ``m = K (d + 1)``; a step forms ``K (K + 1) / 2`` products ``X^T D X``
    (``sum_i nnz_i^2`` multiply-adds each) and factorises it (``m^3 / 3``).
    """
    X = problem.X_train
    n_rows, n_features = X.shape
    n_classes = problem.n_classes
    size = n_classes * (n_features + 1)
    if sp.issparse(X):
        row_products = float(np.sum(np.diff(sp.csr_matrix(X).indptr).astype(float) ** 2))
    else:
        row_products = float(n_rows) * n_features**2
    flops = n_classes * (n_classes + 1) / 2 * row_products + size**3 / 3
    return size**2, flops


def skip_reason(problem, library, solver, quick, include_slow):
    """Why a (library, solver) is not run on ``problem``, or ``None``."""
    if solver == "newton-cholesky":
        entries, flops = newton_cholesky_cost(problem)
        if entries > MAX_HESSIAN_ENTRIES:
            return (
                f"its dense Hessian would have {entries:.1e} entries "
                f"({entries * 8 / 1e9:.3g} GB; limit {MAX_HESSIAN_ENTRIES:.1e})"
            )
        # ours builds its Hessian from a row sample on large data
        if library == SKLEARN and quick and flops > QUICK_MAX_NEWTON_FLOPS:
            return (
                f"--quick: one Newton step costs about {flops:.1e} flops "
                f"(limit {QUICK_MAX_NEWTON_FLOPS:.0e})"
            )
    if not include_slow and (problem.name, library, solver) in SLOW_RUNS:
        return "slow to converge on unscaled features; use --include-slow"
    return None


def reference_estimators(problem, quick):
    """Tightly converged fits from which ``f*`` is taken, keyed by a label."""
    lr_solver = "newton-cholesky"
    if skip_reason(problem, SKLEARN, lr_solver, quick, include_slow=True) is not None:
        lr_solver = "newton-cg"
    return {
        f"sklearn {lr_solver}": LogisticRegression(
            C=C, solver=lr_solver, tol=REFERENCE_TOL, max_iter=REFERENCE_MAX_ITER
        ),
        "skmultilogit newton-cg": MultinomialLogitClassifier(
            C=C, solver="newton-cg", tol=REFERENCE_TOL, max_iter=REFERENCE_MAX_ITER
        ),
    }


def reference_optimum(problem, quick=False):
    """Reference optimum ``f*``: the smallest objective among the reference fits.

    Returns
    -------
    f_star : float
    f_star_from : str
        Label of the fit that gave ``f_star``.
    details : dict
        Objective, iterations, fit time and convergence-warning flag of each
        reference fit, keyed by ``"<library> <solver>"``.
    """
    X, y = problem.X_train, problem.y_train
    details = {}
    for label, estimator in reference_estimators(problem, quick).items():
        fitted, elapsed, warned = timed_fit(functools.partial(clone, estimator), X, y)
        details[label] = {
            "objective": objective(fitted, X, y, C),
            "iterations": int(np.max(fitted.n_iter_)),
            "time_s": elapsed,
            "warned": warned,
        }
    f_star_from = min(details, key=lambda label: details[label]["objective"])
    return details[f_star_from]["objective"], f_star_from, details


# --------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------


def timed_fit(make_estimator, X, y):
    """Fit a fresh estimator on ``(X, y)``, with ConvergenceWarning silenced.

    Returns the fitted estimator, the wall time of ``fit`` alone and whether a
    ``ConvergenceWarning`` was raised.
    """
    estimator = make_estimator()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        start = time.perf_counter()
        estimator.fit(X, y)
        elapsed = time.perf_counter() - start
    warned = any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return estimator, elapsed, warned


def run_one(
    make_estimator, X_train, y_train, X_test, y_test, f_star, C, repeats, *, time_budget=None
):
    """Time one estimator configuration and measure what its fit achieved.

    Parameters
    ----------
    make_estimator : callable
        Returns a fresh, unfitted estimator with ``coef_``, ``intercept_``,
        ``n_iter_`` and ``classes_`` after ``fit``.
    X_train, y_train, X_test, y_test : array-like
        The problem.
    f_star : float
        Reference optimum of the objective on the training part.
    C : float
        Inverse regularisation strength used in the objective.
    repeats : int
        Number of timed fits, after one untimed warm-up fit.
    time_budget : float, optional
        Seconds. If the warm-up fit shows that ``repeats`` fits would exceed
        it, fewer fits are timed; if the warm-up alone exceeds it, its own time
        is reported (``n_timed = 0``).

    Returns
    -------
    dict
        ``time_s`` (median), ``times_s``, ``n_timed``, ``iterations``,
        ``objective``, ``gap``, ``test_acc`` and ``warned`` (any fit raised a
        ``ConvergenceWarning``).
    """
    estimator, warmup_time, warned = timed_fit(make_estimator, X_train, y_train)
    n_timed = repeats
    if time_budget is not None:
        n_timed = min(repeats, int(time_budget // max(warmup_time, 1e-9)))
    times = []
    for _ in range(n_timed):
        estimator, elapsed, warned_now = timed_fit(make_estimator, X_train, y_train)
        times.append(elapsed)
        warned = warned or warned_now
    value = objective(estimator, X_train, y_train, C)
    return {
        "time_s": statistics.median(times) if times else warmup_time,
        "times_s": times if times else [warmup_time],
        "n_timed": n_timed,
        "iterations": int(np.max(estimator.n_iter_)),
        "objective": value,
        "gap": relative_gap(value, f_star),
        "test_acc": float(estimator.score(X_test, y_test)),
        "warned": warned,
    }


def data_bytes(X):
    """Bytes of X's arrays: ``data + indices + indptr`` for a sparse matrix."""
    if sp.issparse(X):
        return X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    return np.asarray(X).nbytes


def peak_fit_bytes(make_estimator, X, y):
    """Peak bytes allocated during one ``fit`` above those allocated before it (tracemalloc)."""
    estimator = make_estimator()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            estimator.fit(X, y)
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def memory_specs(lr_solvers):
    """Each solver of both libraries at its default tol, and each default constructor."""
    specs = [
        RunSpec(OURS, solver, None, functools.partial(MultinomialLogitClassifier, solver=solver))
        for solver in OUR_SOLVERS
    ]
    specs.append(RunSpec(OURS, "auto", None, MultinomialLogitClassifier))
    specs += [
        RunSpec(SKLEARN, solver, None, functools.partial(_lr_ladder_estimator, solver, 1e-4))
        for solver in lr_solvers
    ]
    return specs


def measure_memory(problem, specs, args):
    """Peak memory of one fit on top of X for each spec; rows for the report and JSON."""
    X_bytes = data_bytes(problem.X_train)
    rows = []
    for spec in specs:
        if skip_reason(problem, spec.library, spec.solver, args.quick, args.include_slow):
            continue
        peak = peak_fit_bytes(spec.make_estimator, problem.X_train, problem.y_train)
        rows.append(
            {
                "problem": problem.name,
                "library": spec.library,
                "solver": spec.solver,
                "X_bytes": X_bytes,
                "peak_bytes": peak,
                "peak_over_X": peak / X_bytes,
            }
        )
    return rows


def memory_table(rows):
    """Peak memory on top of X, one line per problem, one column per library and solver."""
    columns = ["problem", "X (MiB)"]
    records = {}
    for row in rows:
        column = f"{'ours' if row['library'] == OURS else 'LR'} {row['solver']}"
        if column not in columns:
            columns.append(column)
        record = records.setdefault(
            row["problem"],
            {"problem": row["problem"], "X (MiB)": f"{row['X_bytes'] / 2**20:.2f}"},
        )
        record[column] = f"{row['peak_over_X']:.2f} ({row['peak_bytes'] / 2**20:.1f})"
    filled = [{c: r.get(c, "-") for c in columns} for r in records.values()]
    return markdown_table(filled, columns)


# --------------------------------------------------------------------------
# Run configurations
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    """One estimator configuration; ``tol=None`` means the class defaults.

    ``isolated``: its fits run in a child process (:class:`IsolatedRuns`).
    """

    library: str
    solver: str
    tol: float | None
    make_estimator: Callable[[], object]
    isolated: bool = False


def our_specs(tols):
    """Ladder runs and the default run of MultinomialLogitClassifier."""
    specs = [
        RunSpec(
            OURS,
            solver,
            tol,
            functools.partial(
                MultinomialLogitClassifier, C=C, solver=solver, tol=tol, max_iter=LADDER_MAX_ITER
            ),
        )
        for solver in OUR_SOLVERS
        for tol in tols
    ]
    default_solver = MultinomialLogitClassifier().solver
    specs.append(RunSpec(OURS, default_solver, None, MultinomialLogitClassifier))
    return specs


def _lr_ladder_estimator(solver, tol):
    if solver in STOCHASTIC_SOLVERS:
        return LogisticRegression(
            C=C, solver=solver, tol=tol, max_iter=STOCHASTIC_MAX_ITER, random_state=0
        )
    return LogisticRegression(C=C, solver=solver, tol=tol, max_iter=LADDER_MAX_ITER)


def sklearn_specs(solvers, tols):
    """Ladder runs and the default run of LogisticRegression."""
    specs = [
        RunSpec(SKLEARN, solver, tol, functools.partial(_lr_ladder_estimator, solver, tol))
        for solver in solvers
        for tol in tols
    ]
    specs.append(RunSpec(SKLEARN, LogisticRegression().solver, None, LogisticRegression))
    return specs


def cyanure_specs(solvers, tols, blas_threads):
    """Ladder runs of cyanure (no default run: it is not a drop-in for the others).

    Its own OpenMP threads follow the thread setting of the run
    (``blas_threads``; None: all cores). Its runs are isolated: its bundled
    OpenBLAS 0.3.15 segfaulted once in qning-svrg on the sparse problem,
    which took the whole benchmark down with it.
    """
    n_threads = -1 if blas_threads is None else blas_threads
    return [
        RunSpec(
            CYANURE,
            solver,
            tol,
            functools.partial(CyanureMultinomial, C=C, solver=solver, tol=tol, n_threads=n_threads),
            isolated=True,
        )
        for solver in solvers
        for tol in tols
    ]


def run_specs(quick, tols=None, blas_threads=1):
    """The full or the quick benchmark's runs (cyanure where installed) at one thread setting.

    ``blas_threads``: the setting (None: the libraries' defaults), which
    cyanure's runs are built for.
    """
    if tols is None:
        tols = QUICK_TOLS if quick else TOLS
    lr_solvers = LR_QUICK_SOLVERS if quick else LR_SOLVERS
    specs = our_specs(tols) + sklearn_specs(lr_solvers, tols)
    if cyanure_available():
        solvers = CYANURE_QUICK_SOLVERS if quick else CYANURE_SOLVERS
        specs += cyanure_specs(solvers, tols, blas_threads)
    return specs


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------


def thread_label(blas_threads):
    """``blas_threads`` (an int, or None: the libraries' defaults) as the report writes it."""
    return "all" if blas_threads is None else str(blas_threads)


def environment(blas_threads):
    """Versions, platform and the effective thread-pool settings (``blas_threads``: a list)."""
    thread_variables = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    return {
        "python": sys.version,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "sklearn": sklearn.__version__,
        "skmultilogit": skmultilogit.__version__,
        "threadpoolctl": threadpoolctl.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "thread_environment_variables": {v: os.environ.get(v) for v in thread_variables},
        "blas_threads": [thread_label(threads) for threads in blas_threads],
        "threadpool_info": threadpoolctl.threadpool_info(),
    }


def environment_line(env):
    """The versions and thread settings of :func:`environment`, in one line."""
    threads = ", ".join(
        f"{pool.get('internal_api')}: {pool.get('num_threads')}" for pool in env["threadpool_info"]
    )
    return (
        f"numpy {env['numpy']}, scipy {env['scipy']}, scikit-learn {env['sklearn']}, "
        f"skmultilogit {env['skmultilogit']}; every run at thread settings "
        f"{' and '.join(env['blas_threads'])} ({threads} outside the runs); "
        f"{env['cpu_count']} cores."
    )


def thread_limit(blas_threads):
    """Context manager limiting BLAS/OpenMP threads, or doing nothing."""
    if blas_threads is None:
        return contextlib.nullcontext()
    return threadpoolctl.threadpool_limits(blas_threads)


class Progress:
    """A tqdm bar over the runs on stderr; per-run lines only when ``verbose``.

    Without tqdm (the ``benchmarks`` extra) the lines are printed instead of
    the bar.
    """

    def __init__(self, total, verbose):
        try:
            from tqdm import tqdm
        except ImportError:
            tqdm = None
        self.verbose = verbose or tqdm is None
        self.bar = None if tqdm is None else tqdm(total=total, unit="run", leave=False)

    def line(self, message):
        if not self.verbose:
            return
        if self.bar is None:
            print(message, file=sys.stderr, flush=True)
        else:
            self.bar.write(message, file=sys.stderr)

    def step(self, description=None):
        if self.bar is not None:
            if description:
                self.bar.set_description(description)
            self.bar.update()

    def close(self):
        if self.bar is not None:
            self.bar.close()


def progress(message):
    print(message, file=sys.stderr, flush=True)


def _timed_in_child(make_estimator, threads, f_star, repeats, time_budget):
    """:func:`run_one` on the child's problem (:class:`IsolatedRuns`), under ``threads``."""
    problem = _CHILD_PROBLEM["problem"]
    with thread_limit(threads):
        return run_one(
            make_estimator,
            problem.X_train,
            problem.y_train,
            problem.X_test,
            problem.y_test,
            f_star,
            C,
            repeats,
            time_budget=time_budget,
        )


_CHILD_PROBLEM = {}


def _hold_problem(problem):
    faulthandler.enable()  # a crash in compiled code prints where, on stderr
    _CHILD_PROBLEM["problem"] = problem


class IsolatedRuns:
    """Runs whose fits happen in a child process, so that a crash costs that run only.

    One spawned child per problem (the problem is sent to it once) runs
    :func:`run_one` for each isolated spec, timed inside the child as in
    the parent. If the child dies (a segfault in a peer's compiled code),
    the run is reported as crashed and the next one gets a fresh child.
    Spawned, not forked: a forked child of a process whose OpenMP pool has
    run (scikit-learn's loss) can hang in its first parallel region.
    """

    def __init__(self, problem):
        self.problem = problem
        self.pool = None

    def run(self, spec, threads, f_star, repeats, time_budget):
        """``run_one``'s result, or None with ``self.crash`` saying what happened."""
        if self.pool is None:
            self.pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_hold_problem,
                initargs=(self.problem,),
            )
        future = self.pool.submit(
            _timed_in_child, spec.make_estimator, threads, f_star, repeats, time_budget
        )
        try:
            return future.result()
        except concurrent.futures.process.BrokenProcessPool:
            self.close()
            return None

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


def benchmark_problem(problem, specs, args, reporter):
    """Run every ``(threads, spec)`` on one problem. Returns (reference, rows, skipped, memory).

    Each run under its thread setting; f* and the memory table under the
    first of ``args.blas_threads``.
    """
    with thread_limit(args.blas_threads[0]):
        f_star, f_star_from, details = reference_optimum(problem, args.quick)
    reference = {"f_star": f_star, "f_star_from": f_star_from, "fits": details}
    reporter.step(f"{problem.name}: f*")
    reporter.line(f"[{problem.name}] f* = {f_star:.12g} ({', '.join(details)})")
    rows, skipped = [], {}
    isolated = IsolatedRuns(problem)
    try:
        for threads, spec in specs:
            label = thread_label(threads)
            reporter.step(f"{problem.name}: {spec.library} {spec.solver}, threads {label}")
            reason = skip_reason(problem, spec.library, spec.solver, args.quick, args.include_slow)
            if reason is not None:
                skipped[f"{problem.name}: {spec.library} {spec.solver}"] = reason
                continue
            if spec.isolated:
                result = isolated.run(spec, threads, f_star, args.repeats, args.max_seconds_per_run)
                if result is None:
                    key = (
                        f"{problem.name}: {spec.library} {spec.solver} "
                        f"tol={format_tol(spec.tol)} threads {label}"
                    )
                    skipped[key] = "crashed: the process running its fits died (see stderr)"
                    reporter.line(f"[{problem.name}] {key.split(': ', 1)[1]}: crashed")
                    continue
            else:
                with thread_limit(threads):
                    result = run_one(
                        spec.make_estimator,
                        problem.X_train,
                        problem.y_train,
                        problem.X_test,
                        problem.y_test,
                        f_star,
                        C,
                        args.repeats,
                        time_budget=args.max_seconds_per_run,
                    )
            row = {"problem": problem.name, "library": spec.library, "solver": spec.solver}
            row["tol"] = spec.tol
            row["threads"] = label
            row.update(result)
            rows.append(row)
            reporter.line(
                f"[{problem.name}] {spec.library} {spec.solver} tol={format_tol(spec.tol)} "
                f"threads {label}: {result['time_s']:.3g} s, gap {result['gap']:.1e}"
            )
    finally:
        isolated.close()
    lr_solvers = LR_QUICK_SOLVERS if args.quick else LR_SOLVERS
    with thread_limit(args.blas_threads[0]):
        memory = measure_memory(problem, memory_specs(lr_solvers), args)
    reporter.step(f"{problem.name}: memory")
    reporter.line(
        f"[{problem.name}] peak memory on top of X: "
        + ", ".join(f"{m['library']} {m['solver']} {m['peak_over_X']:.2f}" for m in memory)
    )
    return reference, rows, skipped, memory


def sort_rows(rows, problem_order):
    """Sort by problem (given order), library, solver, then tol (default first)."""

    def key(row):
        tol_key = (0, 0.0) if row["tol"] is None else (1, -row["tol"])
        return (
            problem_order.index(row["problem"]),
            row["library"],
            row["solver"],
            row.get("threads", "1"),
            tol_key,
        )

    return sorted(rows, key=key)


def fastest_to_gap(rows, problem_names, target=GAP_TARGET):
    """Per problem, the fastest run of each library with gap <= target, and the ratio."""
    summary = []
    for name in problem_names:
        entry = {"problem": name}
        for library in LIBRARIES:
            reached = [
                r
                for r in rows
                if r["problem"] == name and r["library"] == library and r["gap"] <= target
            ]
            entry[library] = min(reached, key=lambda r: r["time_s"]) if reached else None
        ours, lr, cyanure = entry[OURS], entry[SKLEARN], entry[CYANURE]
        entry["ratio"] = ours["time_s"] / lr["time_s"] if ours and lr else None
        entry["ratio_cyanure"] = ours["time_s"] / cyanure["time_s"] if ours and cyanure else None
        summary.append(entry)
    return summary


def not_reaching_target(rows, target=GAP_TARGET):
    """``"problem: library solver"`` of ladder solvers whose every run stayed above target."""
    best = {}
    for r in rows:
        if r["tol"] is not None:
            key = f"{r['problem']}: {r['library']} {r['solver']}"
            best[key] = min(best.get(key, math.inf), r["gap"])
    return {key: gap for key, gap in best.items() if gap > target}


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------


def format_tol(tol):
    return "default" if tol is None else f"{tol:.0e}"


def format_row(row):
    time_s = f"{row['time_s']:.3g}" + ("" if row["n_timed"] else "*")
    return {
        "problem": row["problem"],
        "library": row["library"],
        "solver": row["solver"],
        "tol": format_tol(row["tol"]),
        "threads": row.get("threads", "1"),
        "time_s": time_s,
        "iterations": str(row["iterations"]),
        "gap": f"{row['gap']:.1e}",
        "test_acc": f"{row['test_acc']:.4f}",
        "warned": "yes" if row["warned"] else "no",
    }


def markdown_table(records, columns):
    """A padded markdown table from dicts of strings."""
    widths = {c: max([len(c)] + [len(r[c]) for r in records]) for c in columns}
    line = lambda cells: "| " + " | ".join(cells) + " |"  # noqa: E731
    out = [line(c.ljust(widths[c]) for c in columns)]
    out.append(line("-" * widths[c] for c in columns))
    out.extend(line(r[c].ljust(widths[c]) for c in columns) for r in records)
    return "\n".join(out)


def problems_table(problems):
    """Shape of each problem and its reference optimum."""
    records = [
        {
            "problem": p["name"],
            "train x features": f"{p['n_train']} x {p['n_features']}",
            "classes": str(p["n_classes"]),
            "format": p["format"]
            + (f" ({100 * p['density']:.2g} %)" if p["format"] == "csr" else ""),
            "Bayes acc": f"{p['bayes_accuracy']:.2f}" if "bayes_accuracy" in p else "-",
            "f*": f"{p['reference']['f_star']:.10g}",
            "f* from": p["reference"]["f_star_from"],
        }
        for p in problems
    ]
    columns = ("problem", "train x features", "classes", "format", "Bayes acc", "f*", "f* from")
    return markdown_table(records, columns)


def describe_run(row):
    if row is None:
        return "none reached"
    threads = row.get("threads", "1")
    threads = "all threads" if threads == "all" else f"{threads} thread" + "s" * (threads != "1")
    return f"{row['solver']} tol={format_tol(row['tol'])}, {threads} ({row['time_s']:.3g} s)"


def summary_table(summary, with_cyanure=False):
    """The fastest run of each library per problem, and our time over theirs."""
    ratio = lambda value: "n/a" if value is None else f"{value:.2f}"  # noqa: E731
    records = [
        {
            "problem": e["problem"],
            "skmultilogit": describe_run(e[OURS]),
            "sklearn": describe_run(e[SKLEARN]),
            "ours/LR": ratio(e["ratio"]),
            "cyanure": describe_run(e[CYANURE]),
            "ours/cyanure": ratio(e["ratio_cyanure"]),
        }
        for e in summary
    ]
    columns = ("problem", "skmultilogit", "sklearn", "ours/LR")
    if with_cyanure:
        columns += ("cyanure", "ours/cyanure")
    return markdown_table(records, columns)


def has_cyanure(rows):
    return any(r["library"] == CYANURE for r in rows)


def summary_records(summary):
    """The JSON form of :func:`fastest_to_gap`'s entries."""
    return [
        {
            "problem": e["problem"],
            "ratio_ours_over_sklearn": e["ratio"],
            "ratio_ours_over_cyanure": e["ratio_cyanure"],
        }
        | {lib: e[lib] for lib in LIBRARIES}
        for e in summary
    ]


def report(problems, rows, summary, coarse, skipped, env):
    """The results as markdown: problems, all runs, the summary and notes."""
    out = [
        problems_table(problems),
        "",
        markdown_table([format_row(r) for r in rows], TABLE_COLUMNS),
    ]
    with_cyanure = has_cyanure(rows)
    out += ["", f"Fastest run reaching gap <= {GAP_TARGET:.0e} per problem (same invocation):", ""]
    out.append(summary_table(summary, with_cyanure))
    out += ["", f"Fastest run reaching gap <= {COARSE_GAP:.0e} (a prediction-grade fit):", ""]
    out.append(summary_table(coarse, with_cyanure))
    out.append("")
    threads = ", ".join(
        f"{i.get('internal_api')} {i.get('num_threads')} threads" for i in env["threadpool_info"]
    )
    out.append(
        f"Thread settings of the runs: {', '.join(env['blas_threads'])} "
        f"(threadpoolctl limits; all: the libraries' defaults). Thread pools outside the "
        f"runs: {threads}"
    )
    if any(r["n_timed"] == 0 for r in rows):
        out.append("* slower than the per-run time budget: time of the single warm-up fit.")
    for key, gap in not_reaching_target(rows).items():
        out.append(f"Not reaching gap {GAP_TARGET:.0e} at any tol: {key} (best {gap:.1e})")
    for key, reason in skipped.items():
        out.append(f"Skipped {key}: {reason}")
    return "\n".join(out)


def write_json(path, payload):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")


SOLVER_COLOURS = {
    "lbfgs": "tab:blue",
    "newton-cg": "tab:orange",
    "newton-cholesky": "tab:green",
    "sag": "tab:red",
    "saga": "tab:purple",
    "auto": "tab:brown",
    "qning-miso": "tab:pink",
    "qning-svrg": "tab:olive",
    "catalyst-miso": "tab:cyan",
}
LIBRARY_STYLES = {
    OURS: {"linestyle": "-", "marker": "o"},
    SKLEARN: {"linestyle": "--", "marker": "s"},
    CYANURE: {"linestyle": ":", "marker": "^"},
}


def gap_time_axes(ax, target):
    """Log-log axes of gap against time, with a dotted line at the ``target`` gap."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.axhline(target, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    # Ticks at 1, 2, 5 x 10^k labelled as plain numbers: time ranges often
    # span less than a decade, where the default labels overlap.
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel("relative gap (F - f*) / |f*|")
    ax.grid(True, which="major", alpha=0.3)


def plot_gap_vs_time(rows, problems, path):
    """Log-log plot of relative gap against fit time, one subplot per problem.

    One line per (library, solver) joins its ``tol`` ladder (largest ``tol``
    first); the class-default runs are crosses. Gaps are clipped at
    :data:`GAP_FLOOR`. Returns the path written, or ``None`` when matplotlib
    is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D
    except ImportError:
        return None
    n_cols = min(3, len(problems))
    n_rows = math.ceil(len(problems) / n_cols)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(5 * n_cols, 4 * n_rows), squeeze=False, layout="constrained"
    )
    handles = {}
    for ax, problem in zip(axes.flat, problems, strict=False):
        mine = [r for r in rows if r["problem"] == problem["name"]]
        curves = sorted({(r["library"], r["solver"], r.get("threads", "1")) for r in mine})
        for library, solver, threads in curves:
            style = {"color": SOLVER_COLOURS.get(solver, "black"), **LIBRARY_STYLES[library]}
            if threads != "1":
                # all threads: the same colour and marker, a thinner line
                style["linewidth"] = 0.8
            ladder = sorted(
                (
                    r
                    for r in mine
                    if (r["library"], r["solver"], r.get("threads", "1"))
                    == (library, solver, threads)
                    and r["tol"]
                ),
                key=lambda r: -r["tol"],
            )
            if ladder:
                (line,) = ax.plot(
                    [r["time_s"] for r in ladder],
                    [max(r["gap"], GAP_FLOOR) for r in ladder],
                    markersize=5,
                    label=f"{library} {solver}" + ("" if threads == "1" else " (all threads)"),
                    **style,
                )
                handles.setdefault(line.get_label(), line)
            for r in mine:
                if (r["library"], r["solver"], r.get("threads", "1"), r["tol"]) == (
                    library,
                    solver,
                    threads,
                    None,
                ):
                    ax.plot(r["time_s"], max(r["gap"], GAP_FLOOR), "x", color=style["color"], ms=9)
        gap_time_axes(ax, GAP_TARGET)
        ax.set_title(
            f"{problem['name']}: {problem['n_train']} x {problem['n_features']}, "
            f"K = {problem['n_classes']}"
        )
        ax.set_xlabel("fit time [s] (median)")
    for ax in list(axes.flat)[len(problems) :]:
        ax.set_visible(False)
    handles["class defaults"] = Line2D([], [], color="black", marker="x", linestyle="", ms=9)
    handles[f"gap {GAP_TARGET:.0e}"] = Line2D([], [], color="grey", linestyle=":")
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncols=n_cols + 1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def add_run_arguments(
    parser, *, builders, default_problems, default_output, max_seconds, default_threads=(1, 0)
):
    """The options every benchmark command shares: problems, repeats, threads, output."""
    parser.add_argument(
        "--problems",
        nargs="+",
        choices=list(builders),
        default=list(default_problems),
        metavar="NAME",
        help=f"problems to run, in this order: {', '.join(builders)} (default: "
        f"{' '.join(default_problems)})",
    )
    parser.add_argument("--repeats", type=int, default=None, help="timed fits per run (5)")
    parser.add_argument(
        "--blas-threads",
        type=int,
        nargs="+",
        default=list(default_threads),
        metavar="N",
        help="run every configuration at each of these thread settings, its fits in "
        "threadpoolctl.threadpool_limits(N); 0 leaves the libraries' defaults (all cores); "
        "the summaries take each library's fastest (default: "
        f"{' '.join(map(str, default_threads))}; why: see benchmarks/_harness.py)",
    )
    parser.add_argument(
        "--max-seconds-per-run",
        type=float,
        default=max_seconds,
        help="time fewer repeats of runs whose warm-up fit shows they would exceed this "
        f"({max_seconds:g})",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=default_output,
        help="JSON results file; the markdown report (.md) and the plot (.png) go next to it "
        f"(default: {default_output})",
    )
    parser.add_argument("--no-plot", action="store_true", help="do not draw the plot")
    parser.add_argument("--verbose", action="store_true", help="a line per run")


def check_run_arguments(parser, args, *, default_repeats):
    """Validate and normalise what :func:`add_run_arguments` parsed (in place)."""
    if args.repeats is None:
        args.repeats = default_repeats
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if any(threads < 0 for threads in args.blas_threads):
        parser.error("--blas-threads must be 0 (library defaults) or positive")
    args.blas_threads = list(dict.fromkeys(threads or None for threads in args.blas_threads))
    args.problems = list(dict.fromkeys(args.problems))


def parse_args(argv, *, description, builders, default_problems, default_output):
    parser = argparse.ArgumentParser(description=description)
    add_run_arguments(
        parser,
        builders=builders,
        default_problems=default_problems,
        default_output=default_output,
        max_seconds=60.0,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small synthetic problems, one repeat, tol in (1e-4, 1e-8), LogisticRegression "
        "solvers lbfgs/newton-cg/newton-cholesky only (newton-cholesky on the digits only)",
    )
    parser.add_argument(
        "--tols", nargs="+", type=float, metavar="TOL", help="tol ladder (default: 1e-2 .. 1e-8)"
    )
    parser.add_argument(
        "--include-slow",
        action="store_true",
        help="also run sag/saga on the raw (unscaled) digits",
    )
    parser.add_argument(
        "--no-cv",
        action="store_true",
        help="skip the cross-validation benchmark (MultinomialLogitClassifierCV against "
        "LogisticRegressionCV on the standardised digits)",
    )
    parser.add_argument(
        "--memory-only",
        action="store_true",
        help="measure only the peak memory of one fit per solver on top of X (no timing, no "
        "CV): minutes, and unaffected by other load on the machine",
    )
    args = parser.parse_args(argv)
    check_run_arguments(parser, args, default_repeats=1 if args.quick else 5)
    if args.tols is not None and any(not tol > 0 for tol in args.tols):
        parser.error("--tols must be positive")
    return args


def memory_main(args, builders):
    """``--memory-only``: the memory table of the chosen problems, printed and saved."""
    memory = []
    lr_solvers = LR_QUICK_SOLVERS if args.quick else LR_SOLVERS
    with thread_limit(args.blas_threads[0]):
        for name in args.problems:
            problem = builders[name](quick=args.quick)
            progress(f"[{name}] {problem.describe()}")
            memory.extend(measure_memory(problem, memory_specs(lr_solvers), args))
            del problem
    text = (
        "Peak memory of one fit on top of X, as a multiple of X (MiB in brackets): "
        "tracemalloc's peak of what Python and numpy allocate during fit, default tol:\n\n"
        + memory_table(memory)
    )
    print(text)
    output = Path(args.output).with_name(Path(args.output).stem + "-memory.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".md").write_text(text + "\n")
    write_json(
        output,
        {"quick": args.quick, "memory": memory, "environment": environment(args.blas_threads)},
    )


def main(argv=None, *, description, builders, default_problems, default_output):
    """Parse the command line, run the benchmark and write the report, JSON and plot.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (default: ``sys.argv[1:]``).
    description : str
        Help text of the command.
    builders : dict
        Problem name -> callable ``(quick) -> Problem`` selectable with ``--problems``.
    default_problems : sequence of str
        Problems run when ``--problems`` is not given.
    default_output : Path
        Default JSON path.
    """
    args = parse_args(
        argv,
        description=description,
        builders=builders,
        default_problems=default_problems,
        default_output=default_output,
    )
    start = time.perf_counter()
    if args.memory_only:
        return memory_main(args, builders)
    specs = [
        (threads, spec)
        for threads in args.blas_threads
        for spec in run_specs(args.quick, args.tols, threads)
    ]
    rows, skipped, problems, memory = [], {}, [], []
    reporter = Progress(len(args.problems) * (len(specs) + 2), args.verbose)
    env = environment(args.blas_threads)
    for name in args.problems:
        problem = builders[name](quick=args.quick)
        reporter.line(f"[{name}] {problem.describe()}")
        reference, problem_rows, problem_skipped, problem_memory = benchmark_problem(
            problem, specs, args, reporter
        )
        problems.append(problem.describe() | {"reference": reference})
        rows.extend(problem_rows)
        memory.extend(problem_memory)
        skipped.update(problem_skipped)
        del problem
        # what is done so far, should a later run crash the process (a
        # peer's native code segfaulted once, 45 minutes into a full run)
        write_json(
            Path(args.output).with_suffix(".partial.json"),
            {"environment": env, "problems": problems, "rows": rows, "skipped": skipped},
        )
    reporter.close()
    # the CV comparison at the first thread setting
    with thread_limit(args.blas_threads[0]):
        cv_reporter = Progress(0 if args.no_cv else cv_runs(args.quick), args.verbose)
        cv_progress = lambda message: (cv_reporter.step("cv"), cv_reporter.line(message))  # noqa: E731
        cv_result = None if args.no_cv else run_cv_benchmark(args.quick, args.repeats, cv_progress)
        cv_reporter.close()
    rows = sort_rows(rows, args.problems)
    summary = fastest_to_gap(rows, args.problems)
    coarse = fastest_to_gap(rows, args.problems, COARSE_GAP)
    text = report(problems, rows, summary, coarse, skipped, env)
    text += (
        "\n\nPeak memory of one fit on top of X, as a multiple of X (MiB in brackets): "
        "tracemalloc's peak of what Python and numpy allocate during fit, default tol:\n\n"
        + memory_table(memory)
    )
    if cv_result is not None:
        text += "\n\n" + cv_report(cv_result)
    output = Path(args.output)
    plot_path = None
    if args.no_plot:
        plot_note = "Plot not drawn (--no-plot)."
    else:
        plot_path = plot_gap_vs_time(rows, problems, output.with_suffix(".png"))
        plot_note = (
            f"Plot: {plot_path}"
            if plot_path
            else "matplotlib is not installed: no plot (pip install matplotlib, or the "
            "'benchmarks' extra of skmultilogit)."
        )
    elapsed = time.perf_counter() - start
    text += f"\n{plot_note}\nTotal benchmark time: {elapsed:.1f} s. Results written to {output}"
    # The verdict last, on one screen, after the long tables.
    verdict = "\n".join(
        [
            "",
            f"## Verdict: the fastest run of each library to gap <= {GAP_TARGET:.0e}",
            "",
            summary_table(summary, has_cyanure(rows)),
            "",
            f"{plot_note} Report: {output.with_suffix('.md')}. All runs: {output}.",
            f"{environment_line(env)} {elapsed:.0f} s.",
        ]
    )
    print(text + "\n" + verdict)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".md").write_text(text + "\n")
    settings = {
        "quick": args.quick,
        "problems": args.problems,
        "repeats": args.repeats,
        "C": C,
        "tols": list(args.tols or (QUICK_TOLS if args.quick else TOLS)),
        "gap_target": GAP_TARGET,
        "max_seconds_per_run": args.max_seconds_per_run,
        "include_slow": args.include_slow,
        "reference_tol": REFERENCE_TOL,
        "cv": not args.no_cv,
    }
    write_json(
        output,
        {
            "settings": settings,
            "environment": env,
            "problems": problems,
            "rows": rows,
            "fastest_to_gap": summary_records(summary),
            "fastest_to_coarse_gap": {"gap": COARSE_GAP, "runs": summary_records(coarse)},
            "not_reaching_gap_target": not_reaching_target(rows),
            "skipped": skipped,
            "memory": memory,
            "cv": cv_result,
            "plot": None if plot_path is None else str(plot_path),
            "total_seconds": elapsed,
        },
    )
