"""Odd inputs a large hyper-parameter sweep meets: each gives a correct model or a clear error.

"Correct" is checked against an independent reference wherever one exists:
scikit-learn's LogisticRegression fitted to tight tolerance on the same data
(or on data with the offending part removed, when the model must not depend
on it), a hand-computed optimum, or an exact invariance of the objective.
Every fitted model must also give finite, normalised outputs.
"""

import os
import re
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn
from sklearn.datasets import load_wine
from sklearn.exceptions import ConvergenceWarning, DataConversionWarning
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import KFold

from skmultilogit import MultinomialLogitClassifier, MultinomialLogitClassifierCV

SOLVERS = ["lbfgs", "newton-cg", "newton-cholesky"]
LR_CV_PARAMS = LogisticRegressionCV().get_params()
TIGHT = dict(tol=1e-10, max_iter=20000)


def noisy_problem(n_samples=200, n_features=4, n_classes=3, seed=0):
    """Overlapping classes: a finite optimum exists even without a penalty."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_features))
    logits = X @ rng.normal(size=(n_features, n_classes))
    y = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)
    return X, y


def reference(X, y, C=1.0, **params):
    """LogisticRegression's multinomial optimum (C=np.inf: no penalty)."""
    solver = params.pop("solver", "newton-cholesky")
    lr = LogisticRegression(C=C, solver=solver, tol=1e-12, max_iter=10000, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # its own line-search notes
        return lr.fit(X, y)


def fit_quietly(estimator, X, y, **fit_params):
    """Fit and fail on a ConvergenceWarning: these fits must converge.

    L-BFGS alone may stop where float64 no longer resolves decreases of the
    objective (gradients of about 1e-8, depending on the scipy version), with
    a warning that says so; the caller's checks then still hold it to the
    reference.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        estimator.fit(X, y, **fit_params)
    for warning in caught:
        assert estimator.solver == "lbfgs", warning.message
        assert "no longer decreases at float64" in str(warning.message), warning.message
    return estimator


def assert_sane(clf, X):
    """Finite coefficients; probabilities in [0, 1] summing to 1; finite log-probabilities."""
    assert np.all(np.isfinite(clf.coef_)) and np.all(np.isfinite(clf.intercept_))
    proba = clf.predict_proba(X)
    assert np.all((proba >= 0) & (proba <= 1))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=10 * np.finfo(proba.dtype).eps)
    assert np.all(np.isfinite(clf.predict_log_proba(X)))
    assert np.all(np.isfinite(clf.decision_function(X)))


# -- degenerate columns ------------------------------------------------------


@pytest.mark.parametrize("fmt", ["dense", "csr"])
@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("C", [1.0, np.inf])
def test_constant_column_gets_a_zero_coefficient(C, solver, fmt):
    # Without a penalty the coefficient of a constant column is not
    # identified (the intercept absorbs it); it used to collect rounding
    # noise and reach 1e14, wrecking the other coefficients.
    X, y = noisy_problem()
    with_constant = np.insert(X, 1, 3.0, axis=1)
    if fmt == "csr":
        with_constant = sp.csr_matrix(with_constant)
    clf = fit_quietly(MultinomialLogitClassifier(C=C, solver=solver, **TIGHT), with_constant, y)
    assert np.all(clf.coef_[:, 1] == 0.0)
    lr = reference(X, y, C=C)
    np.testing.assert_allclose(clf.predict_proba(with_constant), lr.predict_proba(X), atol=1e-7)
    assert_sane(clf, with_constant)


@pytest.mark.parametrize("solver", SOLVERS)
def test_column_constant_on_the_weighted_rows_is_constant(solver):
    X, y = noisy_problem()
    with_constant = np.insert(X, 2, 1.0, axis=1)
    with_constant[:10, 2] = np.arange(10)  # rows that will have zero weight
    sample_weight = np.r_[np.zeros(10), np.ones(len(y) - 10)]
    clf = MultinomialLogitClassifier(C=np.inf, solver=solver, **TIGHT)
    fit_quietly(clf, with_constant, y, sample_weight=sample_weight)
    assert np.all(clf.coef_[:, 2] == 0.0)
    lr = reference(X[10:], y[10:], C=np.inf)
    np.testing.assert_allclose(
        clf.predict_proba(with_constant[10:]), lr.predict_proba(X[10:]), atol=1e-7
    )


@pytest.mark.parametrize("solver", SOLVERS)
def test_duplicated_columns(solver):
    X, y = noisy_problem()
    doubled = np.hstack([X, X[:, :2]])
    # With the penalty the optimum splits a duplicated column's weight evenly.
    clf = fit_quietly(MultinomialLogitClassifier(C=1.0, solver=solver, **TIGHT), doubled, y)
    lr = reference(doubled, y, C=1.0)
    np.testing.assert_allclose(clf.coef_, lr.coef_, atol=1e-6)
    np.testing.assert_allclose(clf.coef_[:, :2], clf.coef_[:, 4:], atol=1e-6)
    # Without it only the sum is identified: the model is the one on X.
    unpenalised = fit_quietly(
        MultinomialLogitClassifier(C=np.inf, solver=solver, **TIGHT), doubled, y
    )
    np.testing.assert_allclose(
        unpenalised.predict_proba(doubled), reference(X, y, C=np.inf).predict_proba(X), atol=1e-6
    )
    assert_sane(unpenalised, doubled)


def test_far_more_features_than_samples():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 1000))
    y = np.arange(30) % 3
    clf = fit_quietly(MultinomialLogitClassifier(C=1.0, **TIGHT), X, y)
    lr = reference(X, y, C=1.0)
    np.testing.assert_allclose(clf.predict_proba(X), lr.predict_proba(X), atol=1e-7)
    np.testing.assert_allclose(clf.coef_, lr.coef_, atol=1e-7)
    # Separable without a penalty: no finite optimum, but a finite model
    # that classifies the training data.
    for solver in SOLVERS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            unpenalised = MultinomialLogitClassifier(C=np.inf, solver=solver).fit(X, y)
        np.testing.assert_array_equal(unpenalised.predict(X), y)
        assert_sane(unpenalised, X)


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_sparse_with_empty_rows_and_columns(fmt):
    X, y = noisy_problem(n_features=6)
    X[np.abs(X) < 0.8] = 0.0
    X[:, [1, 4]] = 0.0
    X[::7] = 0.0
    X_sparse = sp.csr_matrix(X).asformat(fmt)
    for solver in SOLVERS:
        clf = fit_quietly(MultinomialLogitClassifier(solver=solver, **TIGHT), X_sparse, y)
        assert np.all(clf.coef_[:, [1, 4]] == 0.0)
        lr = reference(X_sparse, y)
        np.testing.assert_allclose(
            clf.predict_proba(X_sparse), lr.predict_proba(X_sparse), atol=1e-7
        )
        assert_sane(clf, X_sparse)


# -- few, rare and many classes ----------------------------------------------


@pytest.mark.parametrize("solver", SOLVERS)
def test_one_sample_per_class(solver):
    X = np.array([[0.0, 1.0], [1.0, 0.0], [-1.0, -1.0]])
    y = ["a", "b", "c"]
    clf = fit_quietly(MultinomialLogitClassifier(solver=solver, **TIGHT), X, y)
    np.testing.assert_allclose(clf.predict_proba(X), reference(X, y).predict_proba(X), atol=1e-8)
    np.testing.assert_array_equal(clf.predict(X), y)


@pytest.mark.parametrize("solver", SOLVERS)
def test_a_class_with_a_single_sample(solver):
    X, y = noisy_problem()
    y[17] = 3
    clf = fit_quietly(MultinomialLogitClassifier(solver=solver, **TIGHT), X, y)
    np.testing.assert_allclose(clf.predict_proba(X), reference(X, y).predict_proba(X), atol=1e-7)


@pytest.mark.parametrize("class_weight", [None, "balanced"])
def test_imbalance_of_one_to_a_thousand(class_weight):
    rng = np.random.default_rng(2)
    y = np.r_[np.zeros(10000, dtype=int), np.ones(10, dtype=int), np.full(10, 2)]
    X = rng.normal(size=(len(y), 3)) + 1.5 * np.eye(3)[y]
    clf = fit_quietly(MultinomialLogitClassifier(class_weight=class_weight, **TIGHT), X, y)
    lr = reference(X, y, class_weight=class_weight)
    np.testing.assert_allclose(clf.predict_proba(X), lr.predict_proba(X), atol=1e-7)
    assert_sane(clf, X)


def test_hundreds_of_classes():
    rng = np.random.default_rng(3)
    n_classes = 200
    y = np.repeat(np.arange(n_classes), 8)
    X = rng.normal(size=(len(y), 6)) + rng.normal(size=(n_classes, 6))[y]
    clf = fit_quietly(MultinomialLogitClassifier(**TIGHT), X, y)
    assert clf.coef_.shape == (n_classes, 6)
    lr = reference(X, y, solver="lbfgs")
    np.testing.assert_allclose(clf.predict_proba(X), lr.predict_proba(X), atol=1e-6)
    assert_sane(clf, X)


# -- dtypes, layouts and memory ---------------------------------------------


@pytest.mark.parametrize("kind", ["int", "bool"])
def test_integer_and_boolean_X(kind):
    X, y = noisy_problem()
    data = (X > 0) if kind == "bool" else np.round(3 * X).astype(np.int32)
    clf = fit_quietly(MultinomialLogitClassifier(**TIGHT), data, y)
    assert clf.coef_.dtype == np.float64
    np.testing.assert_allclose(
        clf.predict_proba(data), reference(data, y).predict_proba(data), atol=1e-7
    )


def test_fortran_strided_and_read_only_memory_mapped_X(tmp_path):
    X, y = noisy_problem()
    expected = reference(X, y).predict_proba(X)
    wide = np.repeat(X, 2, axis=1)
    path = os.path.join(tmp_path, "X.npy")
    np.save(path, X)
    mapped = np.load(path, mmap_mode="r")
    for data in (np.asfortranarray(X), wide[:, ::2], mapped):
        clf = fit_quietly(MultinomialLogitClassifier(**TIGHT), data, y)
        np.testing.assert_allclose(clf.predict_proba(data), expected, atol=1e-7)
    # Parallel cross-validation hands the workers memory-mapped, read-only X.
    cv = MultinomialLogitClassifierCV(Cs=[1.0], cv=2, n_jobs=2, tol=1e-10).fit(mapped, y)
    np.testing.assert_allclose(cv.predict_proba(X), expected, atol=1e-7)


# -- labels --------------------------------------------------------------------


@pytest.mark.parametrize(
    "y, match",
    [
        (np.array(["a", None, "b"] * 10, dtype=object), r"missing labels.*indices \[1, 4, 7"),
        (np.array([1, None, 2] * 10, dtype=object), "missing labels"),
        (np.array([1.0, np.nan, 2.0] * 10, dtype=object), "missing labels"),
        (np.array(["a", 1, 2.5] * 10, dtype=object), "mixes label types: number.*str"),
        (np.array([True, 1, 0] * 10, dtype=object), "mixes label types: bool.*number"),
        (np.zeros((30, 2), dtype=int), "1d array"),
    ],
)
def test_unusable_labels_are_named(y, match):
    X, _ = noisy_problem(n_samples=30)
    with pytest.raises(ValueError, match=match):
        MultinomialLogitClassifier().fit(X, y)


def test_pandas_missing_labels_are_named():
    pd = pytest.importorskip("pandas")
    X, _ = noisy_problem(n_samples=6)
    for y in (
        pd.Series(["a", "b", None, "a", "b", "c"]),
        pd.Series([1, 2, pd.NA, 1, 2, 3], dtype=object),
    ):
        with pytest.raises(ValueError, match=r"missing labels.*\[2\]"):
            MultinomialLogitClassifier().fit(X, y)


def test_object_integer_labels_and_column_vector_y():
    X, y = noisy_problem()
    expected = MultinomialLogitClassifier().fit(X, y)
    from_objects = MultinomialLogitClassifier().fit(X, y.astype(object))
    np.testing.assert_array_equal(from_objects.classes_, [0, 1, 2])
    np.testing.assert_array_equal(from_objects.coef_, expected.coef_)
    with pytest.warns(DataConversionWarning, match="column-vector y"):
        from_column = MultinomialLogitClassifier().fit(X, y.reshape(-1, 1))
    np.testing.assert_array_equal(from_column.coef_, expected.coef_)


# -- extreme penalties and magnitudes ----------------------------------------


@pytest.mark.parametrize(
    "solver, l1_ratio", [(solver, 0.0) for solver in SOLVERS] + [("lbfgs", 1.0)]
)
@pytest.mark.parametrize("C", [1e-300, 1e-30, 1e-8])
def test_tiny_C_gives_the_class_prior_model(C, solver, l1_ratio):
    # The penalty pins the coefficients to (about) zero; the unpenalised
    # intercepts are then the log class frequencies, centred. A curvature of
    # 1/C next to the intercepts' 1 once stopped L-BFGS with the intercepts
    # untouched and overflowed newton-cholesky's float32 Hessian.
    X, y = noisy_problem()
    clf = fit_quietly(MultinomialLogitClassifier(C=C, solver=solver, l1_ratio=l1_ratio), X, y)
    log_prior = np.log(np.bincount(y) / len(y))
    np.testing.assert_allclose(clf.intercept_, log_prior - log_prior.mean(), atol=1e-6)
    assert np.max(np.abs(clf.coef_)) <= 1e4 * C
    assert_sane(clf, X)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize(
    "C, sample_weight", [(1e-20, 1.0), (1e-30, 1.0), (1e-300, 1.0), (1.0, 1e-20)]
)
def test_tiny_C_gives_the_first_order_coefficients(solver, fit_intercept, C, sample_weight):
    # As C sum(s) -> 0 the optimum tends to W = C X_c^T diag(s) (Y - P0),
    # written out here (P0 the weighted class shares with an intercept, 1/K
    # without; X_c centred with one): exact to rounding at these C. The
    # stopping test once weighed the coefficients' gradient in coordinates
    # that shrank it by sqrt(1 / (C sum(s))): lbfgs and newton-cg returned
    # -800 and 3400 times this, or zeros, without a warning.
    X, y = noisy_problem()
    X = X * [1.0, 30.0, 0.02, 1.0]  # features in other units than 1
    weight = np.full(len(y), sample_weight)
    onehot = np.eye(3)[y]
    if fit_intercept:
        share = weight @ onehot / weight.sum()
        centred = X - weight @ X / weight.sum()
    else:
        share, centred = np.full(3, 1 / 3), X
    expected = C * (centred.T @ (weight[:, None] * (onehot - share))).T
    clf = MultinomialLogitClassifier(C=C, solver=solver, fit_intercept=fit_intercept)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf.fit(X, y, sample_weight=weight)
    np.testing.assert_allclose(clf.coef_, expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize("sparse", [False, True])
def test_a_huge_value_in_a_row_of_zero_weight_changes_nothing(sparse):
    # A row of weight 0 is no part of the objective. Its 1e200 once set the
    # column's units for the feature statistics, the other rows' squares
    # underflowed in them, the feature read as constant and the fit ended
    # 23 % above the optimum. Reference: LogisticRegression on the other rows.
    rng = np.random.default_rng(4)
    z, u = rng.normal(size=200), rng.normal(size=200)
    y = (z + u + rng.normal(size=200) > 0).astype(int) + (u > 1)
    X = np.column_stack([z, u])
    X[0, 0] = 1e200
    weight = np.ones(200)
    weight[0] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = MultinomialLogitClassifier().fit(
            sp.csr_matrix(X) if sparse else X, y, sample_weight=weight
        )
    reference = LogisticRegression(solver="newton-cholesky", tol=1e-12).fit(X[1:], y[1:])
    np.testing.assert_allclose(clf.coef_, reference.coef_, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("factor", [1e-38, 1e-45, 1e-60, 1e-200])
def test_a_feature_in_float32_s_subnormal_range_gets_its_optimal_coefficient(factor):
    # The first wine feature multiplied by 1e-38..1e-200: its coefficient is
    # the penalty's and the data's balance alone, W[:, 0] = C x_0^T (Y - P)
    # at the optimum (written out with the model's probabilities). Its
    # gradient entry is below any tol, so only the Hessian's cross terms
    # place it, and a float32 factor holds those as subnormals or zeros:
    # the default solver returned 20 to 4e7 times the optimum, no warning.
    X, y = load_wine(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    X[:, 0] *= factor
    model = MultinomialLogitClassifier().fit(X, y)
    expected = X[:, 0] @ (np.eye(3)[y] - model.predict_proba(X))
    np.testing.assert_allclose(model.coef_[:, 0], expected, rtol=1e-6)


@pytest.mark.parametrize(
    "solver, dtype, C",
    [("lbfgs", np.float64, 1e-6), ("auto", np.float32, 3.16e-6), ("auto", np.float32, 1e-5)],
)
def test_a_small_C_on_raw_features_converges_as_at_C_one(solver, dtype, C):
    # Raw wine (proline in the thousands) at C * sum(s) of 2e-4 to 2e-3: the
    # full weights lifted float32 rounding above tol on fits within 5e-7 of
    # LogisticRegression's coefficients (float32 keeps a slack); float64
    # lbfgs needs more than 100 iterations there (it warns at the default
    # max_iter, and suggests newton-cholesky) and reaches the optimum.
    #
    # float32 rounding of the unweighted gradient is itself about tol here
    # (proline, mean 747): whether the last iterates dip below 1e-6 is the
    # luck of the path. Scanning 73 values of C from 1e-7 to 0.1, 4 float32
    # fits ended at 1.0-1.3e-6 with float32's precision warning, before and
    # after the preconditioner at the start changed (at other C values);
    # 3.16e-6 is one of them now. So float32 may stop there, but within
    # twice tol: the weights had lifted it far above.
    X, y = load_wine(return_X_y=True)
    reference = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-12, max_iter=1000)
    expected = reference.fit(X, y).coef_
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf = MultinomialLogitClassifier(C=C, solver=solver, max_iter=1000)
        clf.fit(X.astype(dtype), y)
    messages = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
    if dtype == np.float64:
        assert not messages
    for message in messages:
        assert "at float32 precision" in message, message
        assert float(re.search(r"at ([0-9.e+-]+), above tol", message).group(1)) <= 2e-6
    scale = np.abs(expected).max()
    np.testing.assert_allclose(clf.coef_, expected, rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("solver", SOLVERS)
def test_penalty_dominated_coefficients_beside_data_dominated_ones(solver):
    # Breast cancer at C = 1e-8 (lambda ~ 1e5): features of spread 1e-2 are
    # penalty-dominated, area (spread 350) is not, so no fixed-point step
    # applies and the weighted test alone holds the small ones; a test 100
    # times looser left them 3e-2 off, silently. K = 2 is the binary model
    # at 2C.
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    weight = np.exp(np.random.default_rng(0).normal(size=len(y)))
    C = 1e-8
    reference = LogisticRegression(C=2 * C, fit_intercept=False, solver="newton-cholesky")
    expected = reference.set_params(tol=1e-14, max_iter=1000).fit(X, y, weight).coef_[0]
    clf = MultinomialLogitClassifier(C=C, fit_intercept=False, solver=solver, max_iter=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf.fit(X, y, sample_weight=weight)
    np.testing.assert_allclose(clf.coef_[1] - clf.coef_[0], expected, rtol=1e-5)


@pytest.mark.parametrize("solver", SOLVERS)
def test_huge_C_is_no_penalty(solver):
    X, y = noisy_problem()
    clf = fit_quietly(MultinomialLogitClassifier(C=1e300, solver=solver, **TIGHT), X, y)
    lr = reference(X, y, C=np.inf)
    np.testing.assert_allclose(clf.predict_proba(X), lr.predict_proba(X), atol=1e-7)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("factor", [1e150, 1e-150])
def test_extreme_feature_magnitudes_with_matching_C(solver, factor):
    # Scaling X by t and C by 1/t^2 scales the optimal coefficients by 1/t
    # and leaves the model unchanged: C * sum(loss) + ||W||^2 / 2 with
    # W = V / t is (1 / t^2) (C t^2 sum(loss) + ||V||^2 / 2).
    X, y = noisy_problem()
    clf = MultinomialLogitClassifier(C=1.0 / factor**2, solver=solver, **TIGHT)
    fit_quietly(clf, X * factor, y)
    np.testing.assert_allclose(
        clf.predict_proba(X * factor), reference(X, y, C=1.0).predict_proba(X), atol=1e-7
    )


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("factor", [1e300, 1e-300])
def test_features_near_the_float64_limits(solver, factor):
    # Unpenalised, the model does not depend on the features' units.
    X, y = noisy_problem()
    expected = reference(X, y, C=np.inf).predict_proba(X)
    clf = MultinomialLogitClassifier(C=np.inf, solver=solver, **TIGHT)
    fit_quietly(clf, X * factor, y)
    np.testing.assert_allclose(clf.predict_proba(X * factor), expected, atol=1e-6)
    assert_sane(clf, X * factor)


@pytest.mark.parametrize("dtype, factor", [(np.float64, 1e-310), (np.float32, 1e-40)])
def test_subnormal_features_without_penalty_are_refused(dtype, factor):
    # Their coefficients would be about 1 / |x|, beyond the largest float.
    X, y = noisy_problem()
    tiny = (X * factor).astype(dtype)
    with pytest.raises(ValueError, match=r"Features \[0, 1, 2, 3\] vary by less than.*finite C"):
        MultinomialLogitClassifier(C=np.inf).fit(tiny, y)
    # A penalty keeps the coefficients finite: the features are then ignored.
    clf = fit_quietly(MultinomialLogitClassifier(C=1.0), tiny, y)
    log_prior = np.log(np.bincount(y) / len(y))
    np.testing.assert_allclose(clf.intercept_, log_prior - log_prior.mean(), atol=1e-6)
    assert_sane(clf, tiny)


def test_subnormal_features_in_a_one_sided_box_without_penalty_are_refused():
    # A box bounded on one side only does not keep the coefficients finite.
    X, y = noisy_problem()
    tiny = X * 1e-310
    with pytest.raises(ValueError, match=r"Features \[0, 1, 2, 3\] vary by less than"):
        MultinomialLogitClassifier(C=np.inf, coef_bounds=(0.0, np.inf)).fit(tiny, y)
    # Bounded on both sides, they are: the fit goes on, inside the box.
    clf = MultinomialLogitClassifier(C=np.inf, coef_bounds=(-1.0, 1.0)).fit(tiny, y)
    assert np.all(np.abs(clf.coef_) <= 1.0)
    log_prior = np.log(np.bincount(y) / len(y))
    np.testing.assert_allclose(clf.intercept_, log_prior - log_prior.mean(), atol=1e-6)
    assert_sane(clf, tiny)


def test_float32_features_near_the_float32_limit():
    X, y = noisy_problem()
    expected = reference(X, y, C=np.inf).predict_proba(X)
    big = (X * 1e37).astype(np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf = MultinomialLogitClassifier(C=np.inf).fit(big, y)
    # Stopping at float32's resolution is allowed, with that reason given.
    assert all("float32 precision" in str(warning.message) for warning in caught)
    assert clf.coef_.dtype == np.float32
    np.testing.assert_allclose(clf.predict_proba(big), expected, atol=1e-4)
    assert_sane(clf, big)


@pytest.mark.parametrize("fmt", ["dense", "csr"])
@pytest.mark.parametrize("solver", SOLVERS)
def test_separable_classes_without_penalty(solver, fmt):
    rng = np.random.default_rng(4)
    centres = np.array([[6.0, 0.0], [-6.0, 0.0], [0.0, 6.0]])
    y = np.repeat([0, 1, 2], 20)
    X = centres[y] + rng.normal(size=(60, 2))
    data = sp.csr_matrix(X) if fmt == "csr" else X
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # no finite optimum exists
        clf = MultinomialLogitClassifier(C=np.inf, solver=solver, max_iter=500).fit(data, y)
    np.testing.assert_array_equal(clf.predict(data), y)
    assert_sane(clf, data)


# -- the cross-validated estimator on odd data --------------------------------


def odd_cv_problem():
    X, y = noisy_problem()
    X = np.insert(X, 1, 3.0, axis=1)
    y[:2] = 3  # two members: some folds train without this class, most test without it
    sample_weight = np.ones(len(y))
    sample_weight[10:15] = 0.0
    folds = list(KFold(5, shuffle=True, random_state=0).split(X))
    return X, y, sample_weight, folds


def test_cross_validation_with_a_constant_column_a_tiny_class_and_zero_weights():
    X, y, sample_weight, folds = odd_cv_problem()
    cv = MultinomialLogitClassifierCV(Cs=[0.1, 1.0, 10.0], cv=folds, tol=1e-10, max_iter=10000)
    fit_quietly(cv, X, y, sample_weight=sample_weight)
    assert np.all(cv.coef_[:, 1] == 0.0)
    assert np.all(np.isfinite(cv.scores_))
    assert_sane(cv, X)
    # the refit at the chosen C is LogisticRegression's model on all the (weighted) rows
    lr = LogisticRegression(C=cv.C_, solver="newton-cholesky", tol=1e-12, max_iter=10000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        lr.fit(X, y, sample_weight=sample_weight)
    np.testing.assert_allclose(cv.predict_proba(X), lr.predict_proba(X), atol=1e-7)


@pytest.mark.skipif(
    tuple(int(part) for part in sklearn.__version__.split(".")[:2]) < (1, 7),
    reason="LogisticRegressionCV before 1.7 cannot score a test fold that lacks a class",
)
def test_cross_validation_on_odd_data_equals_logistic_regression_cv():
    X, y, sample_weight, folds = odd_cv_problem()
    Cs = [0.1, 1.0, 10.0]
    ours = MultinomialLogitClassifierCV(Cs=Cs, cv=folds, tol=1e-10, max_iter=10000)
    fit_quietly(ours, X, y, sample_weight=sample_weight)
    legacy = {"use_legacy_attributes": False} if "use_legacy_attributes" in LR_CV_PARAMS else {}
    reference = LogisticRegressionCV(
        Cs=Cs, cv=folds, scoring="neg_log_loss", solver="newton-cholesky", tol=1e-12, **legacy
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference.fit(X, y, sample_weight=sample_weight)
    assert ours.C_ == np.ravel(reference.C_)[0]
    np.testing.assert_allclose(ours.predict_proba(X), reference.predict_proba(X), atol=1e-6)
