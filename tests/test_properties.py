"""Properties that must hold on every small problem, checked on problems hypothesis draws.

Hypothesis draws the data, weights, C and solver, and shrinks any failure to a
minimal case. Its data include what hand-picked cases miss: zero and constant
columns, duplicated rows, separable classes, features of very different size.
Each property compares two fits the objective says must be equal, or our fit
against LogisticRegression's optimum under an objective written out here.
"""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import log_softmax as scipy_log_softmax
from scipy.special import logsumexp
from scipy.special import softmax as scipy_softmax
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from skmultilogit import MultinomialLogitClassifier

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

SOLVERS = ["lbfgs", "newton-cg", "newton-cholesky"]


@st.composite
def problems(draw, max_samples=24, max_features=4, max_classes=4):
    """``(X, y, C, solver)``: every class present, X finite and of moderate size."""
    n_classes = draw(st.integers(2, max_classes))
    n_samples = draw(st.integers(n_classes + 1, max_samples))
    n_features = draw(st.integers(1, max_features))
    X = draw(
        hnp.arrays(
            np.float64,
            (n_samples, n_features),
            elements=st.floats(-4.0, 4.0, allow_nan=False, allow_subnormal=False),
        )
    )
    y = draw(hnp.arrays(np.int64, n_samples, elements=st.integers(0, n_classes - 1)))
    y[:n_classes] = np.arange(n_classes)
    C = draw(st.sampled_from([0.1, 1.0, 10.0]))
    solver = draw(st.sampled_from(SOLVERS))
    return X, y, C, solver


def weights(n_samples):
    return hnp.arrays(np.float64, n_samples, elements=st.floats(0.25, 4.0))


def fit(X, y, C, solver, sample_weight=None, **params):
    """Fit to tol=1e-10; only a stop at the objective's floating-point floor may warn.

    L-BFGS's line search needs decreases of the objective, which float64
    resolves only down to gradients of about ``sqrt(eps * curvature * f)``,
    1e-8 on some of these problems; float32 data stop sooner, newton-cg's
    also where its conjugate-gradient solve asks for more than float32
    products resolve (the warning then says so). Newton solvers accept steps
    that shrink the gradient and must reach tol on float64.
    """
    clf = MultinomialLogitClassifier(C=C, solver=solver, tol=1e-10, max_iter=10000, **params)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(X, y, sample_weight=sample_weight)
    for warning in caught:
        message = str(warning.message)
        assert solver == "lbfgs" or X.dtype == np.float32, message
        float32_floor = X.dtype == np.float32 and "float32 products cannot resolve" in message
        assert "no longer decreases" in message or float32_floor, message
    return clf


def coef_atol(solver):
    """How closely two fits of one objective must agree, relative to the coefficients' size.

    A gradient entry g leaves coefficients about ``g / curvature`` off; the
    curvature here is at least the penalty's, ``1 / (C sum(s)) >= 1e-3``.
    """
    return 1e-4 if solver == "lbfgs" else 1e-6


def objective(coef, intercept, X, y, C, sample_weight=None):
    """``C * sum_i s_i (logsumexp(z_i) - z_{i, y_i}) + ||coef||^2 / 2``, written out."""
    _, y_index = np.unique(y, return_inverse=True)
    s = np.ones(len(y)) if sample_weight is None else sample_weight
    logits = X @ coef.T + intercept
    log_loss = logsumexp(logits, axis=1) - logits[np.arange(len(y)), y_index]
    return C * s @ log_loss + 0.5 * np.sum(coef**2)


def assert_same_model(actual, desired):
    """Coefficients and intercepts equal, relative to their size."""
    atol = coef_atol(desired.solver)
    size = max(1.0, np.abs(desired.coef_).max(), np.abs(desired.intercept_).max())
    np.testing.assert_allclose(actual.coef_, desired.coef_, rtol=0, atol=atol * size)
    np.testing.assert_allclose(actual.intercept_, desired.intercept_, rtol=0, atol=atol * size)


@given(problem=problems(), data=st.data())
def test_sample_order_does_not_matter(problem, data):
    X, y, C, solver = problem
    order = data.draw(st.permutations(range(len(y))))
    assert_same_model(fit(X[order], y[order], C, solver), fit(X, y, C, solver))


@given(problem=problems(), data=st.data())
def test_duplicating_a_row_equals_weight_two(problem, data):
    X, y, C, solver = problem
    row = data.draw(st.integers(0, len(y) - 1))
    weight = np.ones(len(y))
    weight[row] = 2.0
    duplicated = fit(np.vstack([X, X[row]]), np.append(y, y[row]), C, solver)
    assert_same_model(duplicated, fit(X, y, C, solver, sample_weight=weight))


@given(problem=problems(), data=st.data())
def test_zero_weight_equals_dropping_the_row(problem, data):
    X, y, C, solver = problem
    row = data.draw(st.integers(0, len(y) - 1))
    keep = np.arange(len(y)) != row
    hypothesis.assume(len(np.unique(y[keep])) == len(np.unique(y)))
    weight = keep.astype(float)
    assert_same_model(fit(X, y, C, solver, sample_weight=weight), fit(X[keep], y[keep], C, solver))


@given(problem=problems(), data=st.data())
def test_scaling_the_weights_by_t_equals_scaling_C_by_t(problem, data):
    X, y, C, solver = problem
    sample_weight = data.draw(weights(len(y)))
    t = data.draw(st.sampled_from([0.01, 0.5, 3.0, 100.0]))
    assert_same_model(
        fit(X, y, C, solver, sample_weight=t * sample_weight),
        fit(X, y, t * C, solver, sample_weight=sample_weight),
    )


@given(problem=problems(), data=st.data())
def test_renaming_classes_permutes_coef_rows_and_proba_columns(problem, data):
    X, y, C, solver = problem
    n_classes = len(np.unique(y))
    # New names sorting in another order: classes_ order follows the names.
    names = np.array(data.draw(st.permutations([f"class_{k}" for k in range(n_classes)])))
    renamed = fit(X, names[y], C, solver)
    original = fit(X, y, C, solver)
    position = np.searchsorted(renamed.classes_, names)  # class k sits in row position[k]
    np.testing.assert_array_equal(renamed.classes_[position], names)
    size = max(1.0, np.abs(original.coef_).max())
    np.testing.assert_allclose(
        renamed.coef_[position], original.coef_, atol=coef_atol(solver) * size
    )
    np.testing.assert_allclose(
        renamed.predict_proba(X)[:, position], original.predict_proba(X), atol=coef_atol(solver)
    )


@given(
    problem=problems(),
    X_new=hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 10), st.just(4)),
        elements=st.floats(-1e200, 1e200, allow_nan=False),
    ),
)
def test_probabilities_are_normalised_and_log_probabilities_finite(problem, X_new):
    X, y, C, solver = problem
    clf = fit(X, y, C, solver)
    X_new = X_new[:, : X.shape[1]]  # any finite values, far outside the training range too
    proba = clf.predict_proba(X_new)
    assert np.all((proba >= 0.0) & (proba <= 1.0))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    log_proba = clf.predict_log_proba(X_new)
    assert np.all(np.isfinite(log_proba)) and np.all(log_proba <= 0.0)
    # against the model's definition, computed here (finite: |x| <= 1e200)
    logits = X_new @ clf.coef_.T + clf.intercept_
    np.testing.assert_allclose(proba, scipy_softmax(logits, axis=1), rtol=1e-9, atol=1e-300)
    np.testing.assert_allclose(log_proba, scipy_log_softmax(logits, axis=1), rtol=1e-9, atol=1e-9)
    predicted = np.searchsorted(clf.classes_, clf.predict(X_new))
    best = logits.max(axis=1)  # the predicted class has the largest logit (up to rounding)
    assert np.all(logits[np.arange(len(logits)), predicted] >= best - 1e-9 * np.abs(best))


def logistic_regression_as_multinomial(lr, n_classes):
    """LogisticRegression's solution in the symmetric K-row parametrisation.

    With two classes it fits one vector ``w`` at ``C_lr = 2 C``; the
    multinomial model with rows ``-w/2, w/2`` has the same probabilities and
    half its objective.
    """
    if n_classes == 2:
        return np.vstack([-lr.coef_ / 2, lr.coef_ / 2]), np.r_[-lr.intercept_, lr.intercept_] / 2
    return lr.coef_, lr.intercept_


@given(problem=problems(), data=st.data())
def test_objective_never_above_logistic_regression(problem, data):
    X, y, C, solver = problem
    sample_weight = data.draw(weights(len(y)))
    n_classes = len(np.unique(y))
    ours = fit(X, y, C, solver, sample_weight=sample_weight)
    lr = LogisticRegression(
        C=2 * C if n_classes == 2 else C, solver="newton-cholesky", tol=1e-12, max_iter=1000
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        lr.fit(X, y, sample_weight=sample_weight)
    reference = objective(
        *logistic_regression_as_multinomial(lr, n_classes), X, y, C, sample_weight
    )
    achieved = objective(ours.coef_, ours.intercept_, X, y, C, sample_weight)
    assert achieved <= reference + 1e-9 * abs(reference) + 1e-12


@given(problem=problems())
def test_float32_fit_agrees_with_float64(problem):
    X, y, C, solver = problem
    exact = fit(X, y, C, solver)
    single = fit(X.astype(np.float32), y, C, solver)
    assert single.coef_.dtype == np.float32
    # float32 resolves the objective to about 1e-7 of its size: the
    # probabilities agree to the square root of that, or better.
    np.testing.assert_allclose(
        single.predict_proba(X.astype(np.float32)), exact.predict_proba(X), atol=1e-3
    )
    achieved = objective(single.coef_.astype(float), single.intercept_.astype(float), X, y, C)
    optimum = objective(exact.coef_, exact.intercept_, X, y, C)
    assert achieved - optimum <= 1e-5 * optimum


@given(problem=problems(), fmt=st.sampled_from(["csr", "csc"]))
def test_sparse_fit_agrees_with_dense(problem, fmt):
    X, y, C, solver = problem
    assert_same_model(fit(sp.csr_matrix(X).asformat(fmt), y, C, solver), fit(X, y, C, solver))
