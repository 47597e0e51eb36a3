"""Time-to-accuracy benchmark on the 8x8 digits: skmultilogit vs LogisticRegression.

Both ``skmultilogit.MultinomialLogitClassifier`` and scikit-learn's
``LogisticRegression`` (multinomial for more than two classes) minimise the
same objective,

.. math::

    F(W, b) = C \\sum_i s_i \\, (-\\log P_{i, y_i}) + \\tfrac12 \\lVert W \\rVert_F^2,

so their fits can be compared on one scale: the relative objective gap
``(F - f*) / |f*|`` to a reference optimum ``f*``.

What is measured
----------------
Problems
    ``load_digits`` in three forms: ``raw`` (pixel values 0..16, poorly
    scaled), ``standardised`` (``StandardScaler`` fitted on the training
    part) and ``binarised`` (``X > 7``). One stratified 75/25 split
    (``random_state=0``), ``C = 1``.
Reference optimum ``f*``
    The smaller objective of ``LogisticRegression(solver="newton-cholesky",
    tol=1e-12)`` and ``MultinomialLogitClassifier(solver="newton-cg",
    tol=1e-12)``, both evaluated with ``skmultilogit.loss_gradient``.
Runs
    Every solver of both libraries over a ladder of ``tol`` values, plus each
    class's default constructor. For each run: the median wall time of
    ``repeats`` fits after one untimed warm-up fit, the iteration count, the
    relative gap, the test accuracy and whether a ``ConvergenceWarning`` was
    raised (it is silenced while timing, but recorded).

Why time-to-gap
---------------
``tol`` means different things in different solvers (a projected gradient
norm for L-BFGS-B, a scaled gradient norm or a step size for the Newton
solvers, a change in coefficients for SAG/SAGA), and the objectives are
scaled differently inside each library. "Time at the default ``tol``"
therefore compares fits of unequal accuracy. Instead the ladder of ``tol``
values traces each solver's time/accuracy curve, and the summary reports the
fastest run of each library that reached a gap of at most ``1e-8``. The
time ratio in that summary is computed from times measured in the same
process, on the same machine, in the same invocation.

Why medians after a warm-up
---------------------------
The first fit pays for imports, page faults and thread-pool start-up. Shared
machines are noisy; the median of several fits is far less sensitive to a
stray slow fit than the mean or a single measurement. A run whose warm-up fit
alone is slower than ``--max-seconds-per-run`` is timed fewer times (possibly
only by its warm-up fit); the JSON output records how many fits were timed.

Threads
-------
Every fit runs inside ``threadpoolctl.threadpool_limits(N)`` with ``N = 1`` by
default (``--blas-threads N`` to change it, ``--blas-threads 0`` for the
libraries' own defaults). On problems this small, multi-threaded BLAS slows
``LogisticRegression`` down badly (on 2 cores: seconds instead of tens of
milliseconds per fit), so one thread is its best setting and the fair one to
compare against. The effective settings are recorded with
``threadpoolctl.threadpool_info()``.

Usage
-----
``python benchmarks/bench_digits.py [--quick] [--repeats N] [--blas-threads N]
[--output PATH]``. Prints a markdown table and a summary to stdout (progress
goes to stderr) and writes all rows and the environment to a JSON file.

The building blocks (``Problem``, ``PROBLEM_BUILDERS``, ``RunSpec``,
``reference_optimum``, ``run_one``) are meant to be reused by benchmarks on
other problems.
"""

import argparse
import contextlib
import functools
import json
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy
import sklearn
import threadpoolctl
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import skmultilogit
from skmultilogit import MultinomialLogitClassifier, loss_gradient

C = 1.0
GAP_TARGET = 1e-8
TOLS = (1e-2, 1e-4, 1e-6, 1e-8)
QUICK_TOLS = (1e-4, 1e-8)
LADDER_MAX_ITER = 10_000
STOCHASTIC_MAX_ITER = 1_000  # sag/saga: one iteration is one epoch
REFERENCE_TOL = 1e-12
REFERENCE_MAX_ITER = 1_000

OURS = "skmultilogit"
SKLEARN = "sklearn"
OUR_SOLVERS = ("lbfgs", "newton-cg")
LR_SOLVERS = ("lbfgs", "newton-cg", "newton-cholesky", "sag", "saga")
LR_QUICK_SOLVERS = ("lbfgs", "newton-cg", "newton-cholesky")
STOCHASTIC_SOLVERS = ("sag", "saga")
# SAG/SAGA converge very slowly on unscaled features: within 1000 epochs they
# stop far from the optimum after seconds per fit, which says nothing new.
SLOW_RUNS = {("raw", SKLEARN, solver) for solver in STOCHASTIC_SOLVERS}

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "digits.json"
TABLE_COLUMNS = (
    "problem",
    "library",
    "solver",
    "tol",
    "time_s",
    "iterations",
    "gap",
    "test_acc",
    "warned",
)


# --------------------------------------------------------------------------
# Problems
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """A train/test classification problem."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


@functools.cache
def _digits_split():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


def digits_raw():
    """Digits with raw pixel values 0..16."""
    X_train, X_test, y_train, y_test = _digits_split()
    return Problem("raw", X_train, y_train, X_test, y_test)


def digits_standardised():
    """Digits standardised with statistics of the training part."""
    X_train, X_test, y_train, y_test = _digits_split()
    scaler = StandardScaler().fit(X_train)
    return Problem(
        "standardised", scaler.transform(X_train), y_train, scaler.transform(X_test), y_test
    )


def digits_binarised():
    """Digits as binary pixels, ``X > 7``."""
    X_train, X_test, y_train, y_test = _digits_split()
    binarise = lambda X: (X > 7).astype(float)  # noqa: E731
    return Problem("binarised", binarise(X_train), y_train, binarise(X_test), y_test)


PROBLEM_BUILDERS = (digits_raw, digits_standardised, digits_binarised)


# --------------------------------------------------------------------------
# Objective and reference optimum
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


def reference_estimators(C):
    """Tightly converged fits from which ``f*`` is taken, keyed by a label."""
    return {
        "sklearn newton-cholesky": LogisticRegression(
            C=C, solver="newton-cholesky", tol=REFERENCE_TOL, max_iter=REFERENCE_MAX_ITER
        ),
        "skmultilogit newton-cg": MultinomialLogitClassifier(
            C=C, solver="newton-cg", tol=REFERENCE_TOL, max_iter=REFERENCE_MAX_ITER
        ),
    }


def reference_optimum(problem, C):
    """Reference optimum ``f*``: the smallest objective among the reference fits.

    Returns
    -------
    f_star : float
    details : dict
        Objective, iterations and convergence-warning flag of each reference fit.
    """
    X, y = problem.X_train, problem.y_train
    details = {}
    for label, estimator in reference_estimators(C).items():
        fitted, _, warned = timed_fit(functools.partial(clone, estimator), X, y)
        details[label] = {
            "objective": objective(fitted, X, y, C),
            "iterations": int(np.max(fitted.n_iter_)),
            "warned": warned,
        }
    f_star = min(d["objective"] for d in details.values())
    return f_star, details


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


# --------------------------------------------------------------------------
# Run configurations
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    """One estimator configuration; ``tol=None`` means the class defaults."""

    library: str
    solver: str
    tol: float | None
    make_estimator: Callable[[], object]


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


def run_specs(quick):
    """All run configurations for the full or the quick benchmark."""
    if quick:
        return our_specs(QUICK_TOLS) + sklearn_specs(LR_QUICK_SOLVERS, QUICK_TOLS)
    return our_specs(TOLS) + sklearn_specs(LR_SOLVERS, TOLS)


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------


def environment(blas_threads):
    """Versions, platform and the effective thread-pool settings."""
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
        "blas_threads": "default" if blas_threads is None else blas_threads,
        "threadpool_info": threadpoolctl.threadpool_info(),
    }


def thread_limit(blas_threads):
    """Context manager limiting BLAS/OpenMP threads, or doing nothing."""
    if blas_threads is None:
        return contextlib.nullcontext()
    return threadpoolctl.threadpool_limits(blas_threads)


def progress(message):
    print(message, file=sys.stderr, flush=True)


def benchmark_problem(problem, specs, repeats, time_budget, include_slow):
    """Run every spec on one problem. Returns (reference, rows, notes)."""
    f_star, details = reference_optimum(problem, C)
    reference = {"f_star": f_star, "fits": details}
    progress(f"[{problem.name}] f* = {f_star:.12g}")
    rows, notes = [], []
    for spec in specs:
        if not include_slow and (problem.name, spec.library, spec.solver) in SLOW_RUNS:
            note = (
                f"{problem.name}: skipped {spec.library} {spec.solver} tol={format_tol(spec.tol)}"
            )
            notes.append(note)
            continue
        result = run_one(
            spec.make_estimator,
            problem.X_train,
            problem.y_train,
            problem.X_test,
            problem.y_test,
            f_star,
            C,
            repeats,
            time_budget=time_budget,
        )
        row = {"problem": problem.name, "library": spec.library, "solver": spec.solver}
        row["tol"] = spec.tol
        row.update(result)
        rows.append(row)
        progress(
            f"[{problem.name}] {spec.library} {spec.solver} tol={format_tol(spec.tol)}: "
            f"{result['time_s']:.3g} s, gap {result['gap']:.1e}"
        )
    return reference, rows, notes


def sort_rows(rows, problem_order):
    """Sort by problem (builder order), library, solver, then tol (default first)."""

    def key(row):
        tol_key = (0, 0.0) if row["tol"] is None else (1, -row["tol"])
        return (problem_order.index(row["problem"]), row["library"], row["solver"], tol_key)

    return sorted(rows, key=key)


def fastest_to_gap(rows, problem_names, target=GAP_TARGET):
    """Per problem, the fastest run of each library with gap <= target, and the ratio."""
    summary = []
    for name in problem_names:
        entry = {"problem": name}
        for library in (OURS, SKLEARN):
            reached = [
                r
                for r in rows
                if r["problem"] == name and r["library"] == library and r["gap"] <= target
            ]
            entry[library] = min(reached, key=lambda r: r["time_s"]) if reached else None
        ours, lr = entry[OURS], entry[SKLEARN]
        entry["ratio"] = ours["time_s"] / lr["time_s"] if ours and lr else None
        summary.append(entry)
    return summary


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


def describe_run(row):
    if row is None:
        return "none reached"
    return f"{row['solver']} tol={format_tol(row['tol'])} ({row['time_s']:.3g} s)"


def summary_table(summary):
    records = [
        {
            "problem": e["problem"],
            "skmultilogit": describe_run(e[OURS]),
            "sklearn": describe_run(e[SKLEARN]),
            "ours/LR": "n/a" if e["ratio"] is None else f"{e['ratio']:.2f}",
        }
        for e in summary
    ]
    return markdown_table(records, ("problem", "skmultilogit", "sklearn", "ours/LR"))


def report(rows, summary, notes, env):
    """Print the results table, the summary and notes to stdout."""
    print(markdown_table([format_row(r) for r in rows], TABLE_COLUMNS))
    print()
    print(f"Fastest run reaching gap <= {GAP_TARGET:.0e} per problem (same invocation):")
    print()
    print(summary_table(summary))
    print()
    threads = ", ".join(
        f"{i.get('internal_api')} {i.get('num_threads')} threads" for i in env["threadpool_info"]
    )
    print(f"Thread pools ({env['blas_threads']}): {threads}")
    if any(r["n_timed"] == 0 for r in rows):
        print("* slower than the per-run time budget: time of the single warm-up fit.")
    for note in notes:
        print(f"Note: {note}")


def write_json(path, payload):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one repeat, tol in (1e-4, 1e-8), LogisticRegression solvers "
        "lbfgs/newton-cg/newton-cholesky only",
    )
    parser.add_argument("--repeats", type=int, default=None, help="timed fits per run (5)")
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        help="wrap all fits in threadpoolctl.threadpool_limits(N); 0 leaves the "
        "libraries' defaults (default: 1, the fastest setting for every library here)",
    )
    parser.add_argument(
        "--max-seconds-per-run",
        type=float,
        default=60.0,
        help="time fewer repeats of runs whose warm-up fit shows they would exceed this (60)",
    )
    parser.add_argument(
        "--include-slow",
        action="store_true",
        help="also run sag/saga on the raw (unscaled) problem",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results file")
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 5
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.blas_threads < 0:
        parser.error("--blas-threads must be 0 (library defaults) or positive")
    args.blas_threads = args.blas_threads or None
    return args


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    specs = run_specs(args.quick)
    problems = [build() for build in PROBLEM_BUILDERS]
    names = [p.name for p in problems]
    rows, notes, references = [], [], {}
    with thread_limit(args.blas_threads):
        env = environment(args.blas_threads)
        for problem in problems:
            reference, problem_rows, problem_notes = benchmark_problem(
                problem, specs, args.repeats, args.max_seconds_per_run, args.include_slow
            )
            references[problem.name] = reference
            rows.extend(problem_rows)
            notes.extend(problem_notes)
    if notes:
        notes.append("sag/saga are slow to converge on unscaled features; use --include-slow.")
    rows = sort_rows(rows, names)
    summary = fastest_to_gap(rows, names)
    elapsed = time.perf_counter() - start
    report(rows, summary, notes, env)
    print(f"Total benchmark time: {elapsed:.1f} s. Results written to {args.output}")
    settings = {
        "quick": args.quick,
        "repeats": args.repeats,
        "C": C,
        "gap_target": GAP_TARGET,
        "max_seconds_per_run": args.max_seconds_per_run,
        "include_slow": args.include_slow,
    }
    write_json(
        args.output,
        {
            "settings": settings,
            "environment": env,
            "references": references,
            "rows": rows,
            "fastest_to_gap": [
                {"problem": e["problem"], "ratio_ours_over_sklearn": e["ratio"]}
                | {lib: e[lib] for lib in (OURS, SKLEARN)}
                for e in summary
            ],
            "notes": notes,
            "total_seconds": elapsed,
        },
    )


if __name__ == "__main__":
    main()
