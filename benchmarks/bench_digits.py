"""Time-to-accuracy benchmark on the 8x8 digits: skmultilogit vs LogisticRegression.

The main job: ``python benchmarks/bench_digits.py`` takes about two minutes
on a 2-core machine. For the raw, standardised and binarised digits it times
both libraries' defaults and every deterministic solver of each on a ``tol``
ladder that stops at the first fit reaching a relative objective gap of
1e-8 (``_main_job.py``), shows a progress bar, and ends with the verdict:
per problem, each library's fastest time to that gap, the ratio, and what
the defaults reach. The plot (gap against time, a panel per problem), a
markdown report and a JSON file of every run go to ``benchmarks/results/``.

``--full`` runs the thorough benchmark of the digits instead (575 s in one
run, 7 minutes of it the cross-validation comparison): every solver of both
libraries (SAG/SAGA too) over the ladder 1e-2 .. 1e-8, the memory each fit
adds, and the cross-validation comparison (``_harness.py``,
``_cv_benchmark.py``). ``--quick`` is its short smoke
test for CI.

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
    For each run: the median wall time of ``repeats`` fits after one untimed
    warm-up fit, the iteration count, the relative gap ``(F - f*) / |f*|``,
    the test accuracy and whether a ``ConvergenceWarning`` was raised.

Time-to-gap, not time at a default ``tol``: ``tol`` means different things
in different solvers. Times are measured in one invocation with one BLAS
thread, the fastest setting for both libraries at this size.

Usage
-----
``python benchmarks/bench_digits.py [--verbose] [--repeats N] [--output PATH]
[--no-plot]``; ``python benchmarks/bench_digits.py --full [--quick] [...]``
takes the options of ``run_benchmarks.py``.
"""

import argparse
import sys
from pathlib import Path

from _harness import add_run_arguments, check_run_arguments
from _harness import main as full_main
from _main_job import main as main_job
from _problems import DIGITS_BUILDERS

RESULTS = Path(__file__).resolve().parent / "results"


def parse_main_job_args(argv):
    parser = argparse.ArgumentParser(
        # no abbreviations: "--fu" would be taken for --full here, which the
        # routing below (on the exact flag) does not see
        allow_abbrev=False,
        description="The main job: the digits, ours against LogisticRegression, about two "
        "minutes. --full for the thorough benchmark (about ten minutes).",
    )
    parser.add_argument("--full", action="store_true", help="the thorough benchmark instead")
    add_run_arguments(
        parser,
        builders=DIGITS_BUILDERS,
        default_problems=list(DIGITS_BUILDERS),
        default_output=RESULTS / "digits-main.json",
        max_seconds=10.0,
        default_threads=(1,),
    )
    args = parser.parse_args(argv)
    check_run_arguments(parser, args, default_repeats=5)
    return args


if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--full" in argv or "--quick" in argv:
        full_main(
            [a for a in argv if a != "--full"],
            description="The thorough digits benchmark: " + __doc__.splitlines()[0],
            builders=DIGITS_BUILDERS,
            default_problems=list(DIGITS_BUILDERS),
            default_output=RESULTS / "digits.json",
        )
    else:
        main_job(parse_main_job_args(argv))
