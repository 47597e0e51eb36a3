"""Bad input gets a clear error naming the problem; extreme input stays finite."""

import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import log_softmax as scipy_log_softmax
from sklearn.exceptions import ConvergenceWarning, NotFittedError

from skmultilogit import MultinomialLogitClassifier, MultinomialLogitClassifierCV

X_OK = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [2.0, 1.0], [1.0, 2.0]])
Y_OK = np.array([0, 1, 0, 1, 0, 1])


@pytest.mark.parametrize(
    "X, match",
    [
        (np.array([[np.nan, 1.0]] * 6), "NaN"),
        (np.array([[np.inf, 1.0]] * 6), "infinity"),
        (np.array([["a", "b"]] * 6, dtype=object), "could not convert|string"),
        (np.empty((6, 0)), "0 feature"),
        (np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), "2D array"),
        (np.array([[1 + 1j, 0.0]] * 6), "[Cc]omplex"),
    ],
)
def test_bad_X_is_rejected_in_fit(X, match):
    with pytest.raises(ValueError, match=match):
        MultinomialLogitClassifier().fit(X, Y_OK)


def test_bad_X_is_rejected_in_predict():
    clf = MultinomialLogitClassifier().fit(X_OK, Y_OK)
    with pytest.raises(
        ValueError, match="X has 3 features, but MultinomialLogitClassifier is expecting 2"
    ):
        clf.predict(np.ones((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        clf.predict_proba(np.array([[np.nan, 0.0]]))
    with pytest.raises(NotFittedError):
        MultinomialLogitClassifier().predict(X_OK)


def test_a_first_fit_that_failed_leaves_the_estimator_unfitted():
    # validation set n_features_in_ before the fit failed: that alone is
    # not a fitted model (an AttributeError on coef_ before)
    from skmultilogit import MultinomialLogitClassifierCV, inference

    for estimator in (MultinomialLogitClassifier(), MultinomialLogitClassifierCV(Cs=2)):
        with pytest.raises(ValueError, match="at least 2 classes"):
            estimator.fit(X_OK, np.zeros(len(Y_OK)))
        for method in ("predict", "predict_proba", "decision_function"):
            with pytest.raises(NotFittedError):
                getattr(estimator, method)(X_OK)
        with pytest.raises(NotFittedError):
            inference(estimator, X_OK, Y_OK)


def test_inference_refuses_other_estimators_and_says_how_to_pass_a_pipeline():
    # A fitted pipeline was "not fitted" (check_is_fitted looked for coef_ on
    # it); scikit-learn's LogisticRegression has coef_, intercept_ and C and
    # was read as this package's model: a binary one (one row of
    # coefficients) failed in a numpy reshape.
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from skmultilogit import inference

    X = np.vstack([X_OK, X_OK + 0.5])
    y = np.concatenate([Y_OK, 1 - Y_OK[::-1]])
    pipe = make_pipeline(StandardScaler(), MultinomialLogitClassifier()).fit(X, y)
    with pytest.raises(TypeError, match=r"got Pipeline\..*inference\(pipe\[-1\], pipe\[:-1\]"):
        inference(pipe, X, y)
    with pytest.raises(TypeError, match="got LogisticRegression.*refit with it"):
        inference(LogisticRegression().fit(X, y), X, y)
    search = GridSearchCV(MultinomialLogitClassifier(), {"C": [0.1, 1.0]}, cv=2).fit(X, y)
    with pytest.raises(TypeError, match="got GridSearchCV.*its best_estimator_"):
        inference(search, X, y)
    # what the message says to do is the inference of the same model fitted
    # on the scaled data
    direct = MultinomialLogitClassifier().fit(StandardScaler().fit_transform(X), y)
    np.testing.assert_allclose(
        inference(pipe[-1], pipe[:-1].transform(X), y).bse,
        inference(direct, StandardScaler().fit_transform(X), y).bse,
        rtol=1e-6,
    )


def test_a_refit_that_failed_leaves_the_estimator_unfitted():
    # validation reset n_features_in_ to 3 beside the previous fit's
    # 2-feature coef_ (a numpy error from predict); the previous model goes
    from skmultilogit import MultinomialLogitClassifierCV

    wider = np.hstack([X_OK, X_OK[:, :1]])
    for estimator in (MultinomialLogitClassifier(), MultinomialLogitClassifierCV(Cs=2, cv=2)):
        estimator.fit(X_OK, Y_OK)
        with pytest.raises(ValueError, match="at least 2 classes"):
            estimator.fit(wider, np.zeros(len(Y_OK)))
        assert not hasattr(estimator, "n_features_in_") and not hasattr(estimator, "coef_")
        with pytest.raises(NotFittedError):
            estimator.predict(wider)


@pytest.mark.parametrize(
    "y, match",
    [
        (np.zeros(6), "at least 2 classes.*only one class"),
        (np.linspace(0, 1, 6), "Unknown label type"),
        (np.array([0, 1, 0]), "inconsistent numbers of samples"),
    ],
)
def test_bad_y_is_rejected(y, match):
    with pytest.raises(ValueError, match=match):
        MultinomialLogitClassifier().fit(X_OK, y)


@pytest.mark.parametrize(
    "sample_weight, match",
    [
        (np.array([1.0, -1.0, 1.0, 1.0, 1.0, 1.0]), "non-negative"),
        (np.zeros(6), "all zero"),
        (np.ones(5), r"shape \(6,\)"),
        (np.array([1.0, np.nan, 1, 1, 1, 1]), "NaN"),
        (np.array([1.0, 0.0, 1.0, 0.0, 1.0, 0.0]), "only one class has positive weight"),
        (np.full(6, 1j), "real numbers"),
        (np.array(["a"] * 6), "real numbers"),
        (np.array([1.0, "a", 1.0, 1.0, 1.0, 1.0], dtype=object), "real numbers"),
        (np.array([1.0, None, 1.0, 1.0, 1.0, 1.0], dtype=object), "NaN"),
        # finite weights whose sum overflows: a uniform model before
        (np.full(6, 1e308), "or their sum overflow float64"),
    ],
)
def test_bad_sample_weight_is_rejected(sample_weight, match):
    with pytest.raises(ValueError, match=match):
        MultinomialLogitClassifier().fit(X_OK, Y_OK, sample_weight=sample_weight)


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_a_malformed_sparse_matrix_is_refused(fmt):
    # scipy does not check its index arrays: an index past the shape reached
    # numpy as an IndexError deep in the feature statistics
    X = sp.csr_matrix(X_OK).asformat(fmt)
    X.indices[0] = 50
    with pytest.raises(ValueError, match=f"malformed {fmt.upper()} matrix.*indices must lie"):
        MultinomialLogitClassifier().fit(X, Y_OK)
    X = sp.csr_matrix(X_OK).asformat(fmt)
    X.indptr[1] = X.indptr[2] + 1
    with pytest.raises(ValueError, match="indptr must start at 0, not decrease"):
        MultinomialLogitClassifier().fit(X, Y_OK)


def test_sample_weights_held_as_objects_are_taken_as_numbers():
    # a pandas column of object dtype, say: LogisticRegression takes them
    weight = np.array([1, 2.5, 1, 3, 1, 1], dtype=object)
    as_objects = MultinomialLogitClassifier().fit(X_OK, Y_OK, sample_weight=weight)
    as_floats = MultinomialLogitClassifier().fit(X_OK, Y_OK, sample_weight=weight.astype(float))
    np.testing.assert_array_equal(as_objects.coef_, as_floats.coef_)


def test_class_weights_that_overflow_the_sample_weights_are_rejected():
    clf = MultinomialLogitClassifier(class_weight={0: 1e300, 1: 1.0})
    with pytest.raises(ValueError, match="or their sum overflow float64"):
        clf.fit(X_OK, Y_OK, sample_weight=np.full(6, 1e10))


@pytest.mark.parametrize("solver", ["auto", "lbfgs", "newton-cg"])
def test_a_penalty_too_strong_for_float64_is_refused(solver):
    # 1 / (C sum(s)) overflows: the strength was inf, l1_ratio * inf NaN, and
    # the fit returned a uniform model after RuntimeWarnings (or scipy raised)
    # (the last: C * sum(s) = 1 / DBL_MAX exactly, whose reciprocal overflows)
    half = np.array([0.5, 0.5, 0.0, 0.0, 0.0, 0.0])
    smallest = 1.0 / np.finfo(np.float64).max
    for C, weight in [(1e-320, np.ones(6)), (1e-160, np.full(6, 1e-160)), (smallest, half)]:
        # (two rows of weight leave a CV fold nothing to fit)
        cv = solver == "auto" and weight is not half
        clf = MultinomialLogitClassifierCV(Cs=[C, 1.0], cv=2) if cv else None
        for estimator in filter(None, [MultinomialLogitClassifier(C=C, solver=solver), clf]):
            with pytest.raises(ValueError, match=r"C \* sum\(sample_weight\) = .* is too small"):
                estimator.fit(X_OK, Y_OK, sample_weight=weight)


@pytest.mark.parametrize(
    "params", [dict(), dict(solver="lbfgs"), dict(l1_ratio=0.5, l1_groups="feature")]
)
def test_the_strongest_penalties_float64_holds_fit_the_class_frequencies(params):
    # C = 1e-310: 1 / C overflows but 1 / (C sum(s)) does not. The limit of a
    # strong penalty: coefficients 0, intercepts log(class frequency) + const.
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(80, 5)), rng.integers(0, 3, 80)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = MultinomialLogitClassifier(C=1e-310, **params).fit(X, y)
    assert np.all(np.abs(clf.coef_) <= 1e-300)
    np.testing.assert_allclose(clf.predict_proba(X[:3]), [np.bincount(y) / 80] * 3, rtol=1e-9)


@pytest.mark.parametrize(
    "params, error, match",
    [
        (dict(C=0.0), ValueError, "C must be > 0"),
        (dict(C=-1.0), ValueError, "C must be > 0"),
        (dict(C=np.nan), ValueError, "C must be finite or np.inf"),
        (dict(C="1"), TypeError, "C must be a real number"),
        (dict(max_iter=0), ValueError, "max_iter must be >= 1"),
        (dict(max_iter=2.5), TypeError, "max_iter must be an integer"),
        (dict(tol=-1e-4), ValueError, "tol must be >= 0"),
        (dict(solver="sag"), ValueError, "solver must be one of"),
        (dict(fit_intercept="yes"), TypeError, "fit_intercept must be True or False"),
        (dict(class_weight={7: 2.0}), ValueError, r"class_weight names classes.*\[7\]"),
        (dict(class_weight="balance"), ValueError, "class_weight must be 'balanced'"),
        (dict(class_weight=[1.0, 2.0]), TypeError, "class_weight must be"),
        (dict(class_weight={0: -1.0}), ValueError, "class_weight"),
        (dict(verbose=-1), ValueError, "verbose must be >= 0"),
        (dict(warm_start=1), TypeError, "warm_start must be True or False"),
    ],
)
def test_bad_parameters_are_rejected_at_fit(params, error, match):
    clf = MultinomialLogitClassifier(**params)  # __init__ only stores
    with pytest.raises(error, match=match):
        clf.fit(X_OK, Y_OK)


def test_stopping_short_warns_with_advice():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    y = (X[:, 0] + 0.5 * rng.normal(size=200) > 0).astype(int)
    with pytest.warns(ConvergenceWarning, match="stopped after 1 iterations.*Increase max_iter"):
        MultinomialLogitClassifier(max_iter=1).fit(X, y)
    with pytest.warns(ConvergenceWarning, match="Increase max_iter"):
        MultinomialLogitClassifier(max_iter=1, solver="newton-cg", tol=1e-12).fit(X, y)


def test_huge_features_give_finite_coefficients_and_probabilities():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 3))
    y = (X[:, 0] + X[:, 1] + rng.normal(scale=0.5, size=100) > 0).astype(int)
    for solver in ("lbfgs", "newton-cg", "newton-cholesky"):
        clf = MultinomialLogitClassifier(C=np.inf, solver=solver).fit(X * 1e150, y)
        assert np.all(np.isfinite(clf.coef_)) and np.all(np.isfinite(clf.intercept_))
        proba = clf.predict_proba(X * 1e150)
        assert np.all(np.isfinite(proba))
        # Unpenalised, the model is equivariant to feature scale.
        unscaled = MultinomialLogitClassifier(C=np.inf, solver=solver).fit(X, y)
        np.testing.assert_allclose(proba, unscaled.predict_proba(X), atol=1e-5)


@pytest.mark.parametrize("solver", ["lbfgs", "newton-cg", "newton-cholesky"])
def test_separable_data_without_penalty_stays_finite(solver):
    X = np.array([[-2.0], [-1.0], [1.0], [2.0], [3.0], [-3.0]])
    y = np.array(["a", "a", "b", "b", "b", "a"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # no finite optimum exists
        clf = MultinomialLogitClassifier(C=np.inf, solver=solver, max_iter=200).fit(X, y)
    assert np.all(np.isfinite(clf.coef_)) and np.all(np.isfinite(clf.intercept_))
    np.testing.assert_array_equal(clf.predict(X), y)
    assert np.all(np.isfinite(clf.predict_proba(X)))
    assert np.all(np.isfinite(clf.predict_log_proba(X)))


def test_log_proba_finite_where_probabilities_underflow():
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    clf = MultinomialLogitClassifier(C=10.0).fit(X, [0, 0, 1, 2])
    X_far = np.array([[1e6], [-1e6]])
    proba = clf.predict_proba(X_far)
    assert np.any(proba == 0.0)  # they do underflow
    log_proba = clf.predict_log_proba(X_far)
    assert np.all(np.isfinite(log_proba))
    reference = scipy_log_softmax(X_far @ clf.coef_.T + clf.intercept_, axis=1)
    np.testing.assert_allclose(log_proba, reference, rtol=1e-12)


@pytest.mark.parametrize("estimator", ["classifier", "cv"])
def test_a_hessian_that_cannot_fit_is_refused_before_anything_large_is_allocated(
    monkeypatch, estimator
):
    # 20 000 x 5 000 sparse, K = 20: the Hessian is 100 020-square, 112 GiB at
    # 12 bytes an entry; it used to die in numpy's MemoryError after a while.
    monkeypatch.setattr("skmultilogit._memory.available_memory", lambda: 16 * 2**30)
    X = sp.random(20000, 5000, density=0.005, format="csr", random_state=0)
    y = np.arange(20000) % 20
    model = (
        MultinomialLogitClassifier(solver="newton-cholesky")
        if estimator == "classifier"
        else MultinomialLogitClassifierCV(Cs=[1.0], cv=2, solver="newton-cholesky")
    )
    tracemalloc.start()
    try:
        with pytest.raises(
            ValueError,
            match=r"100020-square matrix.*needs 111.8 GiB, more than the 16.0 GiB of memory "
            r"available. Use solver='lbfgs'",
        ):
            model.fit(X, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, peak  # X itself is 1.2 MiB of its 6 MiB


def test_a_covariance_that_cannot_fit_is_refused(monkeypatch):
    from skmultilogit import inference

    X, y = X_OK, Y_OK
    clf = MultinomialLogitClassifier().fit(X, y)
    monkeypatch.setattr("skmultilogit._memory.available_memory", lambda: 400)
    with pytest.raises(ValueError, match=r"inference forms the Hessian of the 6 parameters"):
        inference(clf, X, y)
    with pytest.raises(ValueError, match=r"newton-cholesky.*6-square matrix.*needs 432 B"):
        MultinomialLogitClassifier(solver="newton-cholesky").fit(X, y)
    MultinomialLogitClassifier(solver="lbfgs").fit(X, y)  # needs no Hessian


def test_available_memory_is_read_from_the_machine():
    from skmultilogit._memory import available_memory

    available = available_memory()
    assert available is None or 0 < available < 2**60


def test_a_warm_start_from_non_finite_coefficients_is_refused():
    # coefficients set by hand: the fit stayed at NaN after 0 iterations
    clf = MultinomialLogitClassifier(warm_start=True).fit(X_OK, Y_OK)
    for attribute in ("coef_", "intercept_"):
        fitted = MultinomialLogitClassifier(warm_start=True).fit(X_OK, Y_OK)
        getattr(fitted, attribute).flat[0] = np.nan
        with pytest.raises(ValueError, match="hold NaN or infinity"):
            fitted.fit(X_OK, Y_OK)
    clf.coef_[0, 0] = np.inf
    with pytest.raises(ValueError, match="hold NaN or infinity"):
        clf.fit(X_OK, Y_OK)


def test_a_penalty_too_weak_for_float64_fits_as_no_penalty():
    # C * sum(s) = 8e311 overflows: quietly, the strength (1 / C) / sum(s)
    # (a guard: the first form of the fix warned from numpy's scalar product)
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(80, 5)), rng.integers(0, 3, 80)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        weak = MultinomialLogitClassifier(C=1e300, tol=1e-10)
        weak.fit(X, y, sample_weight=np.full(80, 1e10))
    unpenalised = MultinomialLogitClassifier(C=np.inf, tol=1e-10).fit(X, y)
    np.testing.assert_allclose(weak.predict_proba(X), unpenalised.predict_proba(X), atol=1e-9)
