"""One pass of the kernel against the two matrix products inside it.

A loss+gradient pass over X computes the logits ``Z = X W^T + b`` (a product
with X), the n x K element-wise work (row max, exp, sums, log, the residual
``P - Y`` scaled by the weights) and the gradient ``R^T X`` (a second product
with X). A Hessian-vector product is the same with ``U = X V^T + c`` and its
own element-wise part. The products read X twice and cannot be avoided, so
"the two products alone" is the floor a pass is measured against:
``pass / products`` says what the element-wise work, the blocking and the
Python overhead add. The in-memory backend evaluates X in row blocks small
enough that a block stays in cache from the first product to the second, so
the ratio can fall below 1: the two whole-matrix products each stream X from
memory.

What is timed, per case and thread count (``threadpoolctl`` limits BLAS and
OpenMP to 1 thread, then to all cores):

- products: ``X @ W.T`` and ``R.T @ X`` on the whole X (``X.T @ R`` for
  sparse X), R of shape (n, K) in X's dtype, as numpy and scipy run them;
- loss+gradient: ``NumpyBackend.loss_gradient``, what every solver calls,
  as lbfgs calls it (no probabilities kept);
- keeping P: the same pass as a Newton solver's backend runs it once it
  keeps the probabilities for its Hessian products (float64 dense X: the
  pass writes the n x K probabilities too, which saves each Newton step a
  forward product; ``_backends._proba_cache``). At K = 50 and 40 features
  they are more bytes than X;
- Hessian product: ``NumpyBackend.hessp`` at a point whose probabilities are
  already computed (as inside a conjugate-gradient solve);
- the plain pass and the Hessian product again with the compiled
  element-wise loops (``_kernel``) off, on the same steps in numpy: what the
  loops save, side by side.

Each is the median of ``--repeats`` calls after a warm-up. At one thread
the products and the passes are timed in turn, so that a phase of a noisy
machine slows all alike. At all cores the passes (in turn) are timed a
second after the products, whose BLAS threads would otherwise still be
spinning and take the cores from the passes' threads. Large passes run
their row blocks on as many threads as BLAS may use, with BLAS held at one
thread (``skmultilogit._threads``); small ones run on one thread.

Usage: ``python benchmarks/bench_kernel.py [--quick] [--repeats N]
[--output PATH]``; under a minute (``--quick``: a few seconds). A markdown
table on stdout and in ``<output>.md``, the figures in ``<output>``
(JSON, default ``benchmarks/results/kernel.json``).
"""

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from skmultilogit import _loss
from skmultilogit._backends import NumpyBackend

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "kernel.json"

# OpenBLAS's idle threads spin for about 2^28 cycles before they sleep
SPIN_SECONDS = 1.0


def cases(quick):
    """``(name, X, K)``: dense float64 and float32, many classes, sparse CSR."""
    rng = np.random.default_rng(0)
    n = 20_000 if quick else 200_000
    dense = rng.standard_normal((n, 100))
    sparse = sp.random(
        3_000 if quick else 20_000,
        5_000,
        density=0.005,
        format="csr",
        random_state=0,
        data_rvs=lambda size: rng.pareto(3.0, size) + 0.1,
    )
    return [
        (f"dense {n} x 100, K = 10, float64", dense, 10),
        (f"dense {n} x 100, K = 10, float32", dense.astype(np.float32), 10),
        (f"dense {n // 4} x 40, K = 50, float64", rng.standard_normal((n // 4, 40)), 50),
        (f"sparse CSR {sparse.shape[0]} x 5000, 0.5 %, K = 20", sparse, 20),
    ]


def median_times(functions, repeats):
    """Median seconds of each function, called in turn ``repeats`` times after a warm-up."""
    for function in functions:
        function()
    times = [[] for _ in functions]
    for _ in range(repeats):
        for function, seconds in zip(functions, times, strict=True):
            start = time.perf_counter()
            function()
            seconds.append(time.perf_counter() - start)
    return [statistics.median(seconds) for seconds in times]


def measure(X, n_classes, repeats, threads):
    """Seconds of the two products, the passes (plain, keeping P, numpy's) and a Hessian product.

    At one thread the products are timed in turn with the passes, so that a
    phase of the machine slows all alike; with more threads they are timed
    first, then the passes after :data:`SPIN_SECONDS` (see the module
    docstring).
    """
    rng = np.random.default_rng(1)
    n, d = X.shape
    y = rng.integers(0, n_classes, size=n)
    data = NumpyBackend(X, y, n_classes, np.ones(n))
    newton = NumpyBackend(X, y, n_classes, np.ones(n))
    coef = rng.standard_normal((n_classes, d)) * 0.1
    intercept = rng.standard_normal(n_classes) * 0.1
    direction = rng.standard_normal((n_classes, d))
    dir_intercept = rng.standard_normal(n_classes)
    coef_x = coef.astype(X.dtype)
    residual = rng.standard_normal((n, n_classes)).astype(X.dtype)
    X_T = X.T

    def products():
        X @ coef_x.T
        if sp.issparse(X):
            X_T @ residual
        else:
            residual.T @ X

    # a Newton solver's backend keeps the probabilities once it has asked for
    # a Hessian product, and its passes refill them (float64 X; _proba_cache)
    newton.hessp(coef, intercept, direction, dir_intercept)
    compiled = _loss._kernel

    def without_compiled_loops(function):
        def run():
            _loss._kernel = None
            try:
                function()
            finally:
                _loss._kernel = compiled

        return run

    def plain_pass():
        data._proba_cache = None  # as lbfgs's passes: no probabilities kept
        data.loss_gradient(coef, intercept)

    passes = [
        plain_pass,
        lambda: newton.loss_gradient(coef, intercept),
        lambda: newton.hessp(coef, intercept, direction, dir_intercept),
    ]
    passes += [without_compiled_loops(f) for f in (plain_pass, passes[2])]
    if threads == 1:
        products_s, *times = median_times([products] + passes, repeats)
    else:
        (products_s,) = median_times([products], repeats)
        # BLAS threads spin for a while after a product, taking the cores
        # from a pass's own threads (a fit holds BLAS at one thread
        # throughout, so its passes never meet them): let them sleep first
        time.sleep(SPIN_SECONDS)
        times = median_times(passes, repeats)
    return {
        "products_s": products_s,
        "loss_gradient_s": times[0],
        "loss_gradient_keeping_proba_s": times[1],
        "hessp_s": times[2],
        "compiled": compiled is not None,
        "numpy_loss_gradient_s": times[3],
        "numpy_hessp_s": times[4],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small arrays, a few seconds")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls (default 15)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 15)
    all_cores = os.cpu_count() or 1
    rows = []
    for name, X, n_classes in cases(args.quick):
        for threads in sorted({1, all_cores}):
            with threadpool_limits(threads):
                times = measure(X, n_classes, repeats, threads)
            rows.append({"case": name, "threads": threads, **times})
    lines = [
        f"One pass against the two products X W^T and R^T X, medians of {repeats} "
        f"calls, {all_cores} cores (targets: <= 1.10 at 1 thread, <= 1.15 at all cores).",
        "",
        "| case | threads | products (ms) | loss+gradient (ms) | / products "
        "| keeping P: / products | Hessian product (ms) | / products "
        "| numpy loops: loss+gradient, Hessian / products |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        products_ms = 1e3 * row["products_s"]
        numpy_loops = (
            f"{row['numpy_loss_gradient_s'] / row['products_s']:.2f}, "
            f"{row['numpy_hessp_s'] / row['products_s']:.2f}"
            if row["compiled"]
            else "(not built: the columns before are numpy's)"
        )
        lines.append(
            f"| {row['case']} | {row['threads']} | {products_ms:.1f} "
            f"| {1e3 * row['loss_gradient_s']:.1f} "
            f"| {row['loss_gradient_s'] / row['products_s']:.2f} "
            f"| {row['loss_gradient_keeping_proba_s'] / row['products_s']:.2f} "
            f"| {1e3 * row['hessp_s']:.1f} | {row['hessp_s'] / row['products_s']:.2f} "
            f"| {numpy_loops} |"
        )
    report = "\n".join(lines)
    print(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.with_suffix(".md").write_text(report + "\n")
    args.output.write_text(json.dumps({"repeats": repeats, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
