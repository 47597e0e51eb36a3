"""Time-to-accuracy benchmark on the 8x8 digits: skmultilogit vs LogisticRegression.

The digits part of ``run_benchmarks.py`` (including the cross-validation
benchmark, ``_cv_benchmark.py``), kept as its own command because it is
quick and needs no generated data (``--quick``: about 40 seconds).

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
    relative gap ``(F - f*) / |f*|``, the test accuracy and whether a
    ``ConvergenceWarning`` was raised.

The summary reports the fastest run of each library that reached a gap of at
most 1e-8 (time-to-gap: ``tol`` means different things in different solvers),
from times measured in one invocation with one BLAS thread, the fastest
setting for every library at this size. The reasons for these choices are
given in ``_harness.py``; the problems are built in ``_problems.py``.

Usage
-----
``python benchmarks/bench_digits.py [--quick] [--problems NAME [NAME ...]]
[--tols TOL [TOL ...]] [--repeats N] [--blas-threads N]
[--max-seconds-per-run S] [--include-slow] [--output PATH] [--no-plot]``.
Prints a markdown report to stdout (progress goes to stderr) and writes it to
``<output>.md``, all rows and the environment to the JSON file ``--output``
(default ``benchmarks/results/digits.json``) and, if matplotlib is installed,
a plot of gap against time to ``<output>.png``. The full run takes about four
minutes on a 2-core machine.
"""

from pathlib import Path

from _harness import main
from _problems import DIGITS_BUILDERS

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "digits.json"

if __name__ == "__main__":
    main(
        description=__doc__.splitlines()[0],
        builders=DIGITS_BUILDERS,
        default_problems=list(DIGITS_BUILDERS),
        default_output=DEFAULT_OUTPUT,
    )
