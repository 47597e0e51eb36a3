"""Persistence (pickle, joblib, a fresh process) and concurrency (threads, joblib backends)."""

import pickle
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skmultilogit import MultinomialLogitClassifier, MultinomialLogitClassifierCV


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:600], y[:600]


def fitted_models(X, y):
    return {
        "plain": MultinomialLogitClassifier().fit(X, y),
        "elastic_net": MultinomialLogitClassifier(C=0.1, l1_ratio=0.5, max_iter=1000).fit(X, y),
        "pipeline": make_pipeline(StandardScaler(), MultinomialLogitClassifier(C=0.5)).fit(X, y),
        "cv": MultinomialLogitClassifierCV(Cs=[0.01, 0.1, 1.0], cv=3).fit(X, y),
    }


def predictions(model, X):
    return {
        "predict": model.predict(X),
        "predict_proba": model.predict_proba(X),
        "predict_log_proba": model.predict_log_proba(X),
        "decision_function": model.decision_function(X),
    }


def assert_identical(actual, expected):
    for method, values in expected.items():
        np.testing.assert_array_equal(actual[method], values, err_msg=method)


def test_pickle_and_joblib_round_trips_predict_identically(digits, tmp_path):
    X, y = digits
    for name, model in fitted_models(X, y).items():
        expected = predictions(model, X)
        assert_identical(predictions(pickle.loads(pickle.dumps(model)), X), expected)
        path = tmp_path / f"{name}.joblib"
        joblib.dump(model, path, compress=3)
        restored = joblib.load(path)
        assert_identical(predictions(restored, X), expected)
        assert restored.get_params(deep=False).keys() == model.get_params(deep=False).keys()


def test_a_fresh_process_loads_and_predicts_identically(digits, tmp_path):
    X, y = digits
    models = fitted_models(X, y)
    for name, model in models.items():
        joblib.dump(model, tmp_path / f"{name}.joblib")
        with open(tmp_path / f"{name}.pkl", "wb") as file:
            pickle.dump(model, file)
    np.save(tmp_path / "X.npy", X)
    script = textwrap.dedent(
        f"""
        import pickle, sys
        import joblib, numpy as np
        assert "skmultilogit" not in sys.modules
        X = np.load({str(tmp_path / "X.npy")!r})
        def unpickle(path):
            with open(path, "rb") as file:
                return pickle.load(file)
        for name in {list(models)!r}:
            for suffix, load in (("joblib", joblib.load), ("pkl", unpickle)):
                model = load(f"{tmp_path}/{{name}}.{{suffix}}")
                np.savez(
                    f"{tmp_path}/{{name}}-{{suffix}}-out.npz",
                    predict=model.predict(X),
                    predict_proba=model.predict_proba(X),
                    predict_log_proba=model.predict_log_proba(X),
                    decision_function=model.decision_function(X),
                )
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    for name, model in models.items():
        expected = predictions(model, X)
        for suffix in ("joblib", "pkl"):
            with np.load(tmp_path / f"{name}-{suffix}-out.npz") as loaded:
                assert_identical(dict(loaded), expected)


def test_predict_proba_from_many_threads_equals_serial(digits):
    X, y = digits
    model = MultinomialLogitClassifier().fit(X, y)
    chunks = np.array_split(np.arange(len(y)), 40)
    serial = [model.predict_proba(X[rows]) for rows in chunks]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(5):
            threaded = list(pool.map(lambda rows: model.predict_proba(X[rows]), chunks))
            for got, want in zip(threaded, serial, strict=True):
                np.testing.assert_array_equal(got, want)


def test_fits_in_concurrent_threads_equal_serial_fits(digits):
    # Fits limit BLAS threads while they run (threadpoolctl's limits are
    # process-wide): concurrent fits must not disturb one another's result.
    X, y = digits
    Cs = [0.01, 0.1, 1.0, 10.0]
    serial = [MultinomialLogitClassifier(C=C, tol=1e-8).fit(X, y).coef_ for C in Cs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(
            pool.map(lambda C: MultinomialLogitClassifier(C=C, tol=1e-8).fit(X, y).coef_, Cs)
        )
    for got, want in zip(threaded, serial, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-7 * np.abs(want).max())


@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_grid_search_on_joblib_backends_equals_serial(digits, backend):
    X, y = digits
    grid = {
        "multinomiallogitclassifier__C": [0.01, 1.0],
        "multinomiallogitclassifier__solver": ["lbfgs", "newton-cholesky"],
    }
    pipeline = make_pipeline(StandardScaler(), MultinomialLogitClassifier(tol=1e-8, max_iter=1000))
    folds = StratifiedKFold(3, shuffle=True, random_state=0)
    serial = GridSearchCV(pipeline, grid, cv=folds, scoring="neg_log_loss").fit(X, y)
    with joblib.parallel_backend(backend, n_jobs=2):
        parallel = GridSearchCV(pipeline, grid, cv=folds, scoring="neg_log_loss", n_jobs=2)
        parallel.fit(X, y)
    assert parallel.best_params_ == serial.best_params_
    np.testing.assert_allclose(
        parallel.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"], rtol=1e-7
    )
    np.testing.assert_allclose(parallel.predict_proba(X), serial.predict_proba(X), atol=1e-7)
