"""Benchmark suite: skmultilogit against LogisticRegression on six problems, and CV.

Compares ``skmultilogit.MultinomialLogitClassifier`` with scikit-learn's
``LogisticRegression`` (multinomial, L2, same objective, ``C = 1``) by the
time each solver needs to reach a given accuracy of the optimum; then
``MultinomialLogitClassifierCV`` with ``LogisticRegressionCV`` choosing C on
the standardised digits (see ``_cv_benchmark.py``; ``--no-cv`` skips it).

What is measured
----------------
Every solver of both libraries over a ladder of ``tol`` values (1e-2, 1e-4,
1e-6, 1e-8) and each class's defaults. Per run: the median wall time of 5
fits after an untimed warm-up fit, iterations, the relative objective gap
``(F - f*) / |f*|`` to a tight reference optimum, test accuracy, and whether
a ``ConvergenceWarning`` was raised. All fits run with one BLAS thread
(``--blas-threads``), LogisticRegression's fastest setting at these sizes.
The summary gives, per problem, the fastest run of each library reaching a
gap of 1e-8: time-to-gap, because ``tol`` means different things in
different solvers. Why these choices, the reference optimum and the skipped
runs: see ``_harness.py``. The problems (generator, seeds, scales): see
``_problems.py``.

Problems
--------
``raw``, ``standardised``, ``binarised``
    The 8x8 digits (1 347 training rows x 64, K = 10) in three forms.
``dense``
    Synthetic, 75 000 training rows x 100 Gaussian features, K = 10.
``sparse``
    Synthetic CSR, 15 000 training rows x 5 000 features, density 0.5 %,
    positive heavy-tailed values, K = 20. LogisticRegression newton-cholesky
    cannot run here (a dense Hessian of 10^10 entries); ``f*`` comes from
    LogisticRegression newton-cg and ours newton-cg at ``tol = 1e-12``.
``many_classes``
    Synthetic, 22 500 training rows x 40 Gaussian features, K = 50.

The synthetic labels come from a multinomial logit model with a fixed seed,
scaled to a Bayes accuracy of 0.75; all problems use a 75/25 train/test split.

Output
------
A markdown report on stdout (problems with ``f*``, every run, the time-to-gap
summary, skipped runs and solvers that never reached gap 1e-8), also written
to ``<output>.md``; a JSON file (``--output``, default
``benchmarks/results/benchmarks.json``) with all runs, the reference fits,
package versions, BLAS libraries and thread settings; and a PNG next to it
with one log-log plot of gap against time per problem, one line per solver of
each library joining its ``tol`` ladder (benchopt style). The plot needs
matplotlib (the ``benchmarks`` extra); without it, a note replaces the plot.
While it runs, a progress bar over the runs (tqdm, the same extra; without it,
a line per run) on stderr, and with ``--verbose`` a line per run; the report
ends with the verdict again (the time-to-gap summary, where the files went,
the versions), so that it is on screen when the run ends.

Usage
-----
::

    python benchmarks/run_benchmarks.py [--quick] [--problems NAME [NAME ...]]
        [--tols TOL [TOL ...]] [--repeats N] [--blas-threads N]
        [--max-seconds-per-run S] [--include-slow] [--output PATH] [--no-plot]
        [--no-cv] [--verbose]

Runtime
-------
``--quick`` (small synthetic problems: 10 000 x 100, 2 000 x 500 at density
5 %, 3 000 x 40; the digits; tol 1e-4 and 1e-8; one repeat; no SAG/SAGA)
takes about 40 seconds on a 2-core machine, and its CV part (lbfgs only for
LogisticRegressionCV, tol 1e-4 and 1e-6) about 15 more. The full run is long: on a
2-core machine expect a few minutes for the digits and about 15-20 minutes
each for ``dense``, ``sparse`` and ``many_classes``, an hour in all. Most of
it goes to LogisticRegression's newton-cholesky on ``dense`` and
``many_classes`` (25 s and 70-80 s per fit) and to SAG/SAGA, which on
``sparse`` run their 1 000 epochs (about 30 s per fit) without coming near
the optimum. A run whose warm-up fit shows that the repeats would exceed
``--max-seconds-per-run`` (60 s) is timed fewer times; lower it, use a
shorter ``--tols`` ladder or pick problems with ``--problems`` to shorten the
run.
"""

from pathlib import Path

from _harness import main
from _problems import PROBLEM_BUILDERS

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "benchmarks.json"

if __name__ == "__main__":
    main(
        description=__doc__.splitlines()[0],
        builders=PROBLEM_BUILDERS,
        default_problems=list(PROBLEM_BUILDERS),
        default_output=DEFAULT_OUTPUT,
    )
