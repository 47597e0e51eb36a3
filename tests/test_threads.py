"""Fits in threads: no warning lost to another thread's fit, no BLAS limit left behind.

Warning filters and BLAS thread counts are process-wide. A fit must neither
install a filter (which, while it is in place, also swallows the warnings of
fits in other threads, and which overlapping exits can leave behind) nor
restore a BLAS limit in an order that leaves it wrong.
"""

import threading
import time
import types
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from threadpoolctl import threadpool_info

from skmultilogit import MultinomialLogitClassifier
from skmultilogit._solvers._threads import blas_thread_limit


def blas_threads():
    return sorted(info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas")


@pytest.fixture
def several_blas_threads():
    threads = blas_threads()
    if not threads or max(threads) < 2:
        pytest.skip("BLAS runs on one thread here: nothing to limit")
    return threads


def test_overlapping_limits_end_with_the_original_setting(several_blas_threads):
    # Two small fits: A starts, B starts, A ends while B still runs, B ends.
    small = types.SimpleNamespace(stored_entries=1, n_classes=2)
    first, second = blas_thread_limit(small), blas_thread_limit(small)
    first.__enter__()
    second.__enter__()
    assert max(blas_threads()) == 1
    first.__exit__(None, None, None)
    assert max(blas_threads()) == 1  # B still runs: still one thread
    second.__exit__(None, None, None)
    assert blas_threads() == several_blas_threads


def test_threaded_grid_search_leaves_the_blas_setting_as_it_was(several_blas_threads):
    X, y = load_digits(return_X_y=True)
    grid = {"C": [0.01, 0.1, 1.0, 10.0], "tol": [1e-4, 1e-6, 1e-8]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        from joblib import parallel_backend

        with parallel_backend("threading", n_jobs=4):
            GridSearchCV(MultinomialLogitClassifier(), grid, cv=3).fit(X[:600], y[:600])
    assert blas_threads() == several_blas_threads


def test_no_fit_swallows_another_threads_convergence_warning():
    X, y = load_digits(return_X_y=True)
    n_short = 40
    filters_before = list(warnings.filters)
    errors, n_long = [], []
    short_done = threading.Event()

    def long_fits():
        # L-BFGS needs about 900 iterations for tol=1e-10 on the raw digits: each
        # of these warns, and spends most of its time inside its solver
        try:
            count = 0
            while not short_done.is_set():
                MultinomialLogitClassifier(solver="lbfgs", tol=1e-10, max_iter=400).fit(X, y)
                count += 1
            n_long.append(count)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    def short_fits():
        try:
            time.sleep(0.2)  # the long fits are under way
            for _ in range(n_short):
                MultinomialLogitClassifier(solver="lbfgs", max_iter=1).fit(X[:300], y[:300])
                time.sleep(0.005)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)
        finally:
            short_done.set()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        threads = [threading.Thread(target=long_fits), threading.Thread(target=short_fits)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors
    # every fit warned, none was swallowed by a filter another fit had set
    assert sum("stopped after 1 iterations" in str(w.message) for w in caught) == n_short
    assert sum("stopped after 400 iterations" in str(w.message) for w in caught) == n_long[0]
    assert warnings.filters == filters_before


def test_concurrent_fits_equal_serial_fits_and_warn_as_they_do():
    X, y = load_digits(return_X_y=True)
    params = [dict(C=C, max_iter=max_iter) for C in (0.1, 1.0) for max_iter in (2, 100)]
    with warnings.catch_warnings(record=True) as serial_caught:
        warnings.simplefilter("always", ConvergenceWarning)
        serial = [MultinomialLogitClassifier(**p).fit(X, y).coef_ for p in params]
    results = [None] * len(params)

    def fit(index):
        results[index] = MultinomialLogitClassifier(**params[index]).fit(X, y).coef_

    with warnings.catch_warnings(record=True) as threaded_caught:
        warnings.simplefilter("always", ConvergenceWarning)
        threads = [threading.Thread(target=fit, args=(i,)) for i in range(len(params))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    for got, want in zip(results, serial, strict=True):
        np.testing.assert_array_equal(got, want)
    assert len(threaded_caught) == len(serial_caught) > 0
