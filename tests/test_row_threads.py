"""Large in-memory passes run their row blocks in threads: same math, BLAS left as it was.

The references are the formulas written out on the whole of X with
``scipy.special.softmax`` (no row blocks, no threads), and scikit-learn's
``LogisticRegression`` optimum for a fit.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import logsumexp, softmax
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_info, threadpool_limits

from skmultilogit import MultinomialLogitClassifier, _threads
from skmultilogit._backends import NumpyBackend


def blas_threads():
    return sorted(info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas")


pytestmark = pytest.mark.skipif(
    (os.cpu_count() or 1) < 2 or not blas_threads() or max(blas_threads()) < 2,
    reason="one core or one BLAS thread here: passes never run in threads",
)


def large_problem(sparse, seed=0):
    """Data large enough for threaded passes (``ROW_THREADS_FROM``), with weights."""
    rng = np.random.default_rng(seed)
    n_classes = 10
    if sparse:
        X = sp.random(
            20_000, 1_000, density=0.025, format="csr", random_state=seed, dtype=np.float64
        )
    else:
        X = rng.normal(size=(20_000, 50)) * rng.uniform(0.5, 2.0, size=50)
    n, d = X.shape
    assert (X.nnz if sparse else n * d) * n_classes >= _threads.ROW_THREADS_FROM
    y = rng.integers(0, n_classes, size=n)
    weight = rng.uniform(0.2, 3.0, size=n)
    return X, y, weight, n_classes


def written_out(X, y, weight, coef, intercept, direction, dir_intercept):
    """Loss, gradient and Hessian product of ``sum_i w_i (-log P[i, y_i])``, on all of X at once."""
    Z = np.asarray(X @ coef.T) + intercept
    P = softmax(Z, axis=1)
    Y = np.eye(coef.shape[0])[y]
    loss = weight @ (logsumexp(Z, axis=1) - Z[np.arange(len(y)), y])
    R = weight[:, None] * (P - Y)
    U = np.asarray(X @ direction.T) + dir_intercept
    PU = P * U
    S = weight[:, None] * (PU - P * PU.sum(axis=1, keepdims=True))
    return loss, np.asarray(X.T @ R).T, R.sum(axis=0), np.asarray(X.T @ S).T, S.sum(axis=0)


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse-csr"])
def test_threaded_passes_equal_the_written_out_formulas(sparse):
    X, y, weight, K = large_problem(sparse)
    data = NumpyBackend(X, y, K, weight)
    assert len(data._pass_groups()) == 2  # the threaded path is the one under test
    rng = np.random.default_rng(1)
    coef, direction = rng.normal(size=(2, K, X.shape[1])) * 0.3
    intercept, dir_intercept = rng.normal(size=(2, K))
    loss, grad_coef, grad_intercept, hessp_coef, hessp_intercept = written_out(
        X, y, weight, coef, intercept, direction, dir_intercept
    )
    ours_loss, ours_coef, ours_intercept = data.loss_gradient(coef, intercept)
    ours_hessp = data.hessp(coef, intercept, direction, dir_intercept)
    np.testing.assert_allclose(ours_loss, loss, rtol=1e-12)
    scale = np.abs(grad_coef).max()
    np.testing.assert_allclose(ours_coef, grad_coef, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(ours_intercept, grad_intercept, rtol=0, atol=1e-12 * scale)
    scale = np.abs(hessp_coef).max()
    np.testing.assert_allclose(ours_hessp[0], hessp_coef, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(ours_hessp[1], hessp_intercept, rtol=0, atol=1e-12 * scale)
    P = softmax(np.asarray(X @ coef.T) + intercept, axis=1)
    # 1 - sum p^2 is rounded to about K eps absolutely, in both computations
    np.testing.assert_allclose(
        data.curvature(coef, intercept), weight * (1 - (P**2).sum(axis=1)), rtol=1e-12, atol=1e-14
    )


def test_a_threaded_hessian_equals_the_written_out_one():
    # The Hessian's product with a direction, against the product written out
    # (the Hessian itself, n K^2 d^2 by einsum, would take minutes here).
    X, y, weight, K = large_problem(sparse=False)
    data = NumpyBackend(X, y, K, weight)
    rng = np.random.default_rng(2)
    coef, direction = rng.normal(size=(2, K, X.shape[1])) * 0.3
    intercept, dir_intercept = rng.normal(size=(2, K))
    hessian = data.hessian(coef, intercept)
    upper = np.triu(hessian)
    hessian = upper + np.triu(hessian, 1).T
    product = hessian @ np.concatenate([direction.ravel(), dir_intercept])
    *_, hessp_coef, hessp_intercept = written_out(
        X, y, weight, coef, intercept, direction, dir_intercept
    )
    expected = np.concatenate([hessp_coef.ravel(), hessp_intercept])
    np.testing.assert_allclose(product, expected, rtol=0, atol=1e-11 * np.abs(expected).max())


def test_passes_run_in_threads_only_as_threadpoolctl_allows(monkeypatch):
    X, y, weight, K = large_problem(sparse=False)
    data = NumpyBackend(X, y, K, weight)
    groups = []
    original = _threads.map_in_threads

    def counting(function, parts):
        groups.append(len(parts))
        return original(function, parts)

    # (the compiled dense pass and the numpy steps each run their blocks so)
    monkeypatch.setattr("skmultilogit._backends._numpy.map_in_threads", counting)
    monkeypatch.setattr("skmultilogit._backends._compiled.map_in_threads", counting)
    coef, intercept = np.zeros((K, X.shape[1])), np.zeros(K)
    data.loss_gradient(coef, intercept)
    with threadpool_limits(1):
        data.loss_gradient(coef, intercept)
    assert groups == [2, 1]


def test_a_large_fit_holds_blas_at_one_thread_and_restores_it(monkeypatch):
    X, y, weight, K = large_problem(sparse=False)
    before = blas_threads()
    seen = []
    original = NumpyBackend.loss_gradient

    def spying(self, coef, intercept):
        seen.append(max(blas_threads()))
        return original(self, coef, intercept)

    monkeypatch.setattr(NumpyBackend, "loss_gradient", spying)
    MultinomialLogitClassifier(solver="lbfgs", tol=1e-4).fit(X, y)
    assert seen and set(seen) == {1}
    assert blas_threads() == before


def test_an_error_in_a_thread_reaches_the_caller_and_leaves_blas_as_it_was():
    before = blas_threads()

    def failing(group):
        if group == "second":
            raise RuntimeError("in the pool")
        return group

    with pytest.raises(RuntimeError, match="in the pool"):
        _threads.map_in_threads(failing, ["first", "second"])
    assert blas_threads() == before
    assert _threads.map_in_threads(str.upper, ["a", "b"]) == ["A", "B"]


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse-csr"])
def test_a_threaded_fit_reaches_logistic_regressions_optimum(sparse):
    X, y, weight, K = large_problem(sparse, seed=3)
    ours = MultinomialLogitClassifier(C=0.5, tol=1e-10, max_iter=2000)
    ours.fit(X, y, sample_weight=weight)
    # newton-cg: on the sparse problem LogisticRegression's lbfgs at tol=1e-10
    # stopped 4.8e-9 above the optimum (probabilities 1.2e-6 away from it)
    reference = LogisticRegression(C=0.5, solver="newton-cg", tol=1e-12, max_iter=1000)
    reference.fit(X, y, sample_weight=weight)
    np.testing.assert_allclose(
        ours.predict_proba(X[:500]), reference.predict_proba(X[:500]), rtol=0, atol=1e-6
    )


def test_a_forked_child_runs_threaded_passes():
    # The pool's threads do not survive a fork; a child that reused the
    # parent's pool object would wait forever on its first threaded pass.
    import multiprocessing

    X, y, weight, K = large_problem(sparse=False)
    data = NumpyBackend(X, y, K, weight)
    coef, intercept = np.zeros((K, X.shape[1])), np.zeros(K)
    expected = data.loss_gradient(coef, intercept)[0]  # the parent's pool now exists
    with multiprocessing.get_context("fork").Pool(1) as pool:
        result = pool.apply_async(_child_loss, (X, y, weight, K))
        assert result.get(timeout=60) == pytest.approx(expected, rel=1e-12)


def _child_loss(X, y, weight, K):
    data = NumpyBackend(X, y, K, weight)
    assert len(data._pass_groups()) == 2
    return data.loss_gradient(np.zeros((K, X.shape[1])), np.zeros(K))[0]


def test_the_pool_threads_keep_the_callers_numpy_error_state():
    # A fit ignores overflow in line-search trials (np.errstate, which is per
    # thread); the blocks run on pool threads must ignore it too: here a
    # trial's design rows overflowed in the Hessian pass, and a fit under
    # warnings-as-errors raised where a one-thread fit did not.
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    rng = np.random.default_rng(0)
    X = rng.normal(size=(20_000, 50))
    logits = X @ rng.normal(size=(50, 3))
    y = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)
    data = NumpyBackend(X, y, 3, np.ones(len(y)))
    assert len(data._pass_groups()) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        MultinomialLogitClassifier(C=np.inf, solver="newton-cholesky").fit(X * 1e300, y)


def test_a_fit_leaves_a_users_threadpool_limits_in_another_thread_intact():
    # threadpoolctl >= 3.8: one thread controls OpenBLAS's limit. A fit that
    # took control from a user's threadpool_limits dropped its restore, and
    # BLAS stayed at one thread for good.
    import threading
    import time

    import threadpoolctl

    if not hasattr(getattr(threadpoolctl, "OpenBLASController", None), "_SHARED_STATE"):
        pytest.skip("threadpoolctl < 3.8: any thread may set the limit")
    before = blas_threads()
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20_000, 100)), rng.integers(0, 10, size=20_000)
    entered = threading.Event()

    def fit():
        # longer than the user's block below: it must end after the block
        entered.wait()
        MultinomialLogitClassifier(solver="lbfgs", tol=1e-12, max_iter=300).fit(X, y)

    thread = threading.Thread(target=fit)
    thread.start()
    with threadpool_limits(limits=1):
        entered.set()
        time.sleep(0.2)
    thread.join()
    assert blas_threads() == before


def test_a_fit_inside_threadpool_limits_runs_on_one_thread_beside_another_fit():
    import threading

    X, y, weight, K = large_problem(sparse=False)
    data = NumpyBackend(X, y, K, weight)
    holding, release = threading.Event(), threading.Event()

    def other_fit():
        with _threads.SINGLE_BLAS_THREAD.hold():
            holding.set()
            release.wait(30)

    thread = threading.Thread(target=other_fit)
    thread.start()
    holding.wait(30)
    try:
        assert len(data._pass_groups()) == 2
        with threadpool_limits(1):
            assert len(data._pass_groups()) == 1
    finally:
        release.set()
        thread.join()


def test_a_child_forked_during_a_fit_gets_the_blas_setting_back():
    import multiprocessing

    before = blas_threads()
    with _threads.SINGLE_BLAS_THREAD.hold():
        assert max(blas_threads()) == 1
        with multiprocessing.get_context("fork").Pool(1) as pool:
            holders, threads = pool.apply_async(_child_state).get(timeout=60)
    assert holders == 0 and threads == before


def _child_state():
    return _threads.SINGLE_BLAS_THREAD.holders, blas_threads()


def test_csr_row_blocks_are_views_of_x_with_int64_indices():
    X, y, weight, K = large_problem(sparse=True)
    X = X.copy()
    X.indices, X.indptr = X.indices.astype(np.int64), X.indptr.astype(np.int64)
    data = NumpyBackend(X, y, K, weight)
    blocks = [block for group in data._pass_groups() for _, block, _ in group]
    assert len(blocks) == 2
    for block in blocks:
        assert np.shares_memory(block.indices, X.indices)
        assert np.shares_memory(block.data, X.data)
    reference = NumpyBackend(X.tocsc(), y, K, weight)  # CSC: one block, no threads
    coef = np.random.default_rng(0).normal(size=(K, X.shape[1]))
    np.testing.assert_allclose(
        data.loss_gradient(coef, np.zeros(K))[1],
        reference.loss_gradient(coef, np.zeros(K))[1],
        rtol=0,
        atol=1e-11,
    )


def pass_groups_in_a_child(pin, **environment):
    """The thread groups of a large dense pass, in a fresh process, pinned to one core or not.

    Pinned after numpy is loaded, so that BLAS keeps its pool of a thread
    per machine core, as it does under a container's CPU quota, which it
    does not read. Without the thread variables a Dask LocalCluster of an
    earlier test leaves in this process's environment (one BLAS thread).
    """
    code = (
        "import os, sys; sys.path.insert(0, sys.argv[1]); import test_row_threads as t\n"
        "from skmultilogit._backends import NumpyBackend\n"
        f"if {pin}: os.sched_setaffinity(0, {{min(os.sched_getaffinity(0))}})\n"
        "assert max(t.blas_threads()) >= 2, t.threadpool_info()\n"
        "X, y, weight, K = t.large_problem(False)\n"
        "print(len(NumpyBackend(X, y, K, weight)._pass_groups()))\n"
    )
    limits = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    env = {name: value for name, value in os.environ.items() if name not in limits}
    child = subprocess.run(
        [sys.executable, "-c", code, os.path.dirname(__file__)],
        capture_output=True,
        text=True,
        env={**env, **environment},
    )
    assert child.returncode == 0, child.stderr
    return int(child.stdout)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity here")
def test_a_process_pinned_to_one_core_runs_its_passes_on_one_thread():
    # The machine has two cores or more (see pytestmark): the row threads
    # must follow the cores the process may use, not BLAS's setting nor the
    # machine's cores. In a child process: the affinity is process-wide.
    assert pass_groups_in_a_child(pin=True) == 1


def test_passes_use_the_cores_with_joblibs_multiprocessing_off():
    # joblib.cpu_count() says 1 there; threads need no multiprocessing.
    assert pass_groups_in_a_child(pin=False, JOBLIB_MULTIPROCESSING="0") >= 2
