"""The estimator against independent references: scikit-learn's
LogisticRegression optimum, statsmodels' MNLogit, and properties any correct
fit of this objective has."""

import functools
import inspect
import pickle
import re
import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import logsumexp, softmax
from sklearn.datasets import load_digits, load_iris, load_wine, make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.class_weight import compute_class_weight

from skmultilogit import MultinomialLogitClassifier, loss_gradient

TIGHT = dict(tol=1e-10, max_iter=20000)


@functools.cache
def dataset(name):
    if name == "iris":
        X, y = load_iris(return_X_y=True)
    elif name == "wine_raw":  # features from 0.1 to 1680: badly scaled
        X, y = load_wine(return_X_y=True)
    elif name == "digits_scaled":
        X, y = load_digits(return_X_y=True)
        X, y = StandardScaler().fit_transform(X[:600]), y[:600]
    elif name == "synthetic":
        X, y = make_classification(
            n_samples=300, n_features=8, n_informative=5, n_classes=4, random_state=0
        )
    X.setflags(write=False)
    return X, y


def weights_for(y):
    return np.random.default_rng(0).uniform(0.2, 3.0, size=len(y))


VARIANTS = {
    "default": dict(),
    "sample_weight": dict(),
    "balanced": dict(class_weight="balanced"),
    "class_weight_dict": dict(class_weight={0: 3.0, 1: 0.5}),
    "no_intercept": dict(fit_intercept=False),
    "small_C": dict(C=1e-3),
    "large_C": dict(C=1e3),
}


@functools.cache
def reference_fit(name, variant):
    """LogisticRegression's optimum, by its exact Newton solver."""
    X, y = dataset(name)
    sample_weight = weights_for(y) if variant == "sample_weight" else None
    lr = LogisticRegression(solver="newton-cholesky", tol=1e-12, max_iter=1000, **VARIANTS[variant])
    lr.fit(X, y, sample_weight=sample_weight)
    return lr


def assert_same_coef(actual, desired, rtol=1e-6):
    """Entrywise within rtol, measured against the size of the coefficients."""
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * np.abs(desired).max())


def direct_l2_optimum(X, y, C):
    """``(W, b)`` minimising the objective written out here, by scipy from a random start.

    ``F = C sum_i (logsumexp(z_i) - z_{i, y_i}) + 1/2 ||W||^2`` with every one
    of the K rows of W penalised and nothing centred, minimised by Newton's
    method with the Hessian written out as
    ``C sum_i (diag(p_i) - p_i p_i^T) (x) [x_i, 1] [x_i, 1]^T`` plus the
    penalty: an independent reference for the package's optimum, and for
    properties of the optimum the package imposes by construction (columns
    of W summing to zero; for K = 2, ``W_0 = -W_1``). b is determined up to
    a shift shared by all classes: the last class's intercept is held at 0
    (which also keeps the Hessian non-singular).
    """
    _, y = np.unique(y, return_inverse=True)
    n_samples, n_features = X.shape
    n_classes = y.max() + 1
    design = np.hstack([X, np.ones((n_samples, 1))])
    onehot = np.eye(n_classes)[y]
    size = n_classes * (n_features + 1)
    penalised = np.tile(np.r_[np.ones(n_features), 0.0], n_classes)  # theta = [W | b] by rows
    free = np.arange(size) != size - 1  # all but the last class's intercept

    def full(theta_free):
        theta = np.zeros(size)
        theta[free] = theta_free
        return theta

    def objective(theta_free):
        theta = full(theta_free)
        logits = design @ theta.reshape(n_classes, -1).T
        value = C * np.sum(logsumexp(logits, axis=1) - logits[np.arange(n_samples), y])
        grad = (C * (softmax(logits, axis=1) - onehot).T @ design).ravel() + penalised * theta
        return value + 0.5 * np.sum(penalised * theta**2), grad[free]

    def hessian(theta_free):
        proba = softmax(design @ full(theta_free).reshape(n_classes, -1).T, axis=1)
        middle = proba[:, :, None] * (np.eye(n_classes) - proba[:, None, :])  # diag(p) - p p^T
        data = np.einsum("ikl,ia,ib->kalb", middle, design, design).reshape(size, size)
        return (C * data + np.diag(penalised))[np.ix_(free, free)]

    # Newton's method with a backtracking line search, written out here too
    # (scipy's trust-exact stops short of 1e-8 on older releases: its ratio of
    # actual to predicted decrease is noise below the objective's rounding)
    theta_free = np.random.default_rng(0).normal(size=size - 1)
    value, grad = objective(theta_free)
    for _ in range(100):
        if np.abs(grad).max() < 1e-10:
            break
        step = -np.linalg.solve(hessian(theta_free), grad)
        length = 1.0
        while length > 1e-12:
            new_value, new_grad = objective(theta_free + length * step)
            decreased = new_value <= value + 1e-4 * length * (grad @ step)
            at_rounding = abs(new_value - value) <= 1e-13 * abs(value)
            if decreased or (at_rounding and np.abs(new_grad).max() < np.abs(grad).max()):
                break
            length /= 2
        else:
            break
        theta_free, value, grad = theta_free + length * step, new_value, new_grad
    assert np.abs(grad).max() < 1e-8, np.abs(grad).max()
    theta = full(theta_free).reshape(n_classes, -1)
    return theta[:, :n_features], theta[:, n_features]


# Nearly flat problems (weak penalty on near-separable or badly scaled data):
# first-order L-BFGS stops where float64 can no longer resolve decreases of the
# objective, which pins coef only to about sqrt(eps / smallest curvature).
# There it is held to the optimal objective; newton-cg to coef everywhere.
FLAT_FOR_LBFGS = {
    ("wine_raw", "large_C"),
    ("wine_raw", "no_intercept"),
    ("digits_scaled", "large_C"),
    ("synthetic", "large_C"),
}


def objective(clf, X, y, sample_weight, C):
    _, y_index = np.unique(y, return_inverse=True)
    weights = np.ones(len(y)) if sample_weight is None else sample_weight
    if clf.class_weight is not None:
        from sklearn.utils.class_weight import compute_class_weight

        weights = (
            weights * compute_class_weight(clf.class_weight, classes=np.unique(y), y=y)[y_index]
        )
    return loss_gradient(clf.coef_, clf.intercept_, X, y_index, sample_weight=weights, C=C)[0]


@pytest.mark.parametrize("solver", ["lbfgs", "newton-cg", "newton-cholesky"])
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("name", ["iris", "wine_raw", "digits_scaled", "synthetic"])
def test_same_optimum_as_logistic_regression(name, variant, solver):
    X, y = dataset(name)
    sample_weight = weights_for(y) if variant == "sample_weight" else None
    lr = reference_fit(name, variant)
    clf = MultinomialLogitClassifier(solver=solver, **TIGHT, **VARIANTS[variant])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf.fit(X, y, sample_weight=sample_weight)
    if solver == "lbfgs" and (name, variant) in FLAT_FOR_LBFGS:
        C = VARIANTS[variant].get("C", 1.0)
        ours, ref = objective(clf, X, y, sample_weight, C), objective(lr, X, y, sample_weight, C)
        assert (ours - ref) / ref < 1e-9
        assert_same_coef(clf.coef_, lr.coef_, rtol=1e-3)
        return
    assert_same_coef(clf.coef_, lr.coef_)
    assert_same_coef(clf.intercept_, lr.intercept_ - lr.intercept_.mean())
    np.testing.assert_allclose(clf.predict_proba(X), lr.predict_proba(X), atol=1e-6)


@pytest.mark.parametrize("C", [0.05, 1.0, 30.0])
def test_binary_is_logistic_regression_with_doubled_C(C):
    X, y = load_breast_cancer_scaled()
    clf = MultinomialLogitClassifier(C=C, solver="newton-cg", **TIGHT).fit(X, y)
    lr = LogisticRegression(C=2 * C, solver="newton-cholesky", tol=1e-12, max_iter=1000)
    lr.fit(X, y)
    assert clf.coef_.shape == (2, X.shape[1])
    assert_same_coef(clf.coef_[1] - clf.coef_[0], lr.coef_[0])
    # the two rows themselves: the optimum has W_0 = -W_1, found from a random
    # start by a solver that imposes nothing
    direct_coef, _ = direct_l2_optimum(X, y, C)
    np.testing.assert_allclose(direct_coef[0], -direct_coef[1], atol=1e-7)
    assert_same_coef(clf.coef_, direct_coef)
    np.testing.assert_allclose(
        clf.intercept_[1] - clf.intercept_[0], lr.intercept_[0], rtol=1e-6, atol=1e-8
    )
    decision = clf.decision_function(X)
    assert decision.shape == (X.shape[0],)
    np.testing.assert_allclose(decision, lr.decision_function(X), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(clf.predict(X), lr.predict(X))


def load_breast_cancer_scaled():
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def test_unpenalised_fit_matches_statsmodels_mnlogit():
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    true_coef = np.array([[0.0, 0.0, 0.0], [1.0, -0.5, 0.3], [-0.7, 0.8, 0.2]])
    proba = np.exp(X @ true_coef.T)
    proba /= proba.sum(axis=1, keepdims=True)
    y = np.array([rng.choice(3, p=p) for p in proba])
    clf = MultinomialLogitClassifier(C=np.inf, solver="newton-cg", **TIGHT).fit(X, y)
    result = sm.MNLogit(y, sm.add_constant(X)).fit(method="newton", maxiter=100, disp=False)
    # statsmodels fixes class 0 as reference: its parameters are w_k - w_0.
    params = np.asarray(result.params)  # (1 + d, K - 1)
    np.testing.assert_allclose(
        (clf.intercept_[1:] - clf.intercept_[0]), params[0], rtol=1e-6, atol=1e-7
    )
    np.testing.assert_allclose((clf.coef_[1:] - clf.coef_[0]), params[1:].T, rtol=1e-6, atol=1e-7)


def test_every_solver_reaches_the_optimum_written_out_without_centring():
    X, y = dataset("synthetic")
    direct_coef, direct_intercept = direct_l2_optimum(X, y, 1.0)
    # the L2 optimum's columns sum to zero over classes (which the package's
    # centring relies on), found by a solver that does not centre
    np.testing.assert_allclose(direct_coef.sum(axis=0), 0.0, atol=1e-7)
    for solver in ("lbfgs", "newton-cg", "newton-cholesky"):
        clf = MultinomialLogitClassifier(solver=solver, **TIGHT).fit(X, y)
        assert_same_coef(clf.coef_, direct_coef, rtol=1e-6)
        assert_same_coef(clf.intercept_, direct_intercept - direct_intercept.mean(), rtol=1e-6)


# --- properties -------------------------------------------------------------


def test_sample_order_does_not_matter():
    X, y = dataset("synthetic")
    order = np.random.default_rng(1).permutation(len(y))
    a = MultinomialLogitClassifier(**TIGHT).fit(X, y)
    b = MultinomialLogitClassifier(**TIGHT).fit(X[order], y[order])
    assert_same_coef(b.coef_, a.coef_, rtol=1e-6)


@pytest.mark.parametrize("class_weight", [None, "balanced"])
def test_duplicated_row_equals_weight_two(class_weight):
    X, y = dataset("synthetic")
    weight = np.ones(len(y))
    weight[:50] = 2.0
    X_dup = np.vstack([X, X[:50]])
    y_dup = np.concatenate([y, y[:50]])
    a = MultinomialLogitClassifier(class_weight=class_weight, **TIGHT).fit(
        X, y, sample_weight=weight
    )
    b = MultinomialLogitClassifier(class_weight=class_weight, **TIGHT).fit(X_dup, y_dup)
    assert_same_coef(a.coef_, b.coef_, rtol=1e-6)


def test_zero_weight_equals_dropping_the_row():
    X, y = dataset("synthetic")
    weight = np.ones(len(y))
    weight[::3] = 0.0
    keep = weight > 0
    a = MultinomialLogitClassifier(**TIGHT).fit(X, y, sample_weight=weight)
    b = MultinomialLogitClassifier(**TIGHT).fit(X[keep], y[keep])
    assert_same_coef(a.coef_, b.coef_, rtol=1e-6)


def test_relabelling_classes_permutes_coef_rows():
    X, y = dataset("synthetic")
    relabel = np.array([30, 10, 40, 20])  # class k becomes relabel[k]
    a = MultinomialLogitClassifier(**TIGHT).fit(X, y)
    b = MultinomialLogitClassifier(**TIGHT).fit(X, relabel[y])
    np.testing.assert_array_equal(b.classes_, [10, 20, 30, 40])
    rows = np.argsort(relabel)  # row j of b is the original class rows[j]
    assert_same_coef(b.coef_, a.coef_[rows], rtol=1e-6)
    np.testing.assert_array_equal(b.predict(X), relabel[a.predict(X)])


def test_string_and_noncontiguous_labels():
    X, y = dataset("iris")
    names = np.array(["setosa", "versicolor", "virginica"], dtype=object)[y]
    clf = MultinomialLogitClassifier().fit(X, names)
    np.testing.assert_array_equal(clf.classes_, ["setosa", "versicolor", "virginica"])
    assert set(clf.predict(X)) <= set(clf.classes_)
    ints = np.array([-5, 7, 100])[y]
    clf_int = MultinomialLogitClassifier().fit(X, ints)
    np.testing.assert_array_equal(clf_int.classes_, [-5, 7, 100])
    assert_same_coef(clf_int.coef_, clf.coef_, rtol=1e-12)


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_sparse_equals_dense(fmt):
    X, y = dataset("synthetic")
    X = np.where(np.abs(X) < 0.7, 0.0, X)  # genuinely sparse
    X_sparse = sp.csr_matrix(X) if fmt == "csr" else sp.csc_matrix(X)
    for solver in ("lbfgs", "newton-cg", "newton-cholesky"):
        dense = MultinomialLogitClassifier(solver=solver, **TIGHT).fit(X, y)
        sparse = MultinomialLogitClassifier(solver=solver, **TIGHT).fit(X_sparse, y)
        assert_same_coef(sparse.coef_, dense.coef_, rtol=1e-6)
        np.testing.assert_allclose(
            sparse.predict_proba(X_sparse), dense.predict_proba(X), atol=1e-7
        )


# float32 products make the objective noisy at about 1e-7 relative.
# newton-cholesky's line search accepts steps that shrink the gradient within
# that noise, so it reaches the float64 optimum. L-BFGS's line search and
# trust-ncg's ratio test (newton-cg) compare objective values, stop once
# decreases drown in the noise, and must say so when that is short of tol:
# trust-ncg stops there at C=0.25 on these data, and at C=1 or not depending
# on the order of float32 rounding inside the BLAS products.
def test_float32_in_float32_out_at_the_same_optimum():
    X, y = dataset("digits_scaled")
    X32 = X.astype(np.float32)
    X64 = X32.astype(np.float64)
    _, y_index = np.unique(y, return_inverse=True)
    reference = MultinomialLogitClassifier(solver="newton-cg", **TIGHT).fit(X64, y)
    f64 = loss_gradient(reference.coef_, reference.intercept_, X64, y_index)[0]

    def gap(clf):
        return (loss_gradient(clf.coef_, clf.intercept_, X64, y_index)[0] - f64) / f64

    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        newton = MultinomialLogitClassifier(solver="newton-cholesky", tol=1e-8).fit(X32, y)
        lbfgs_loose = MultinomialLogitClassifier(solver="lbfgs", tol=1e-4, max_iter=1000)
        lbfgs_loose.fit(X32, y)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        newton_cg = MultinomialLogitClassifier(solver="newton-cg", tol=1e-8).fit(X32, y)
    for clf in (newton, newton_cg, lbfgs_loose):
        assert clf.coef_.dtype == np.float32 and clf.intercept_.dtype == np.float32
        assert clf.predict_proba(X32).dtype == np.float32
        assert clf.predict_log_proba(X32).dtype == np.float32
        assert clf.decision_function(X32).dtype == np.float32
    assert_same_coef(newton.coef_, reference.coef_, rtol=1e-5)
    assert -1e-12 < gap(newton) < 1e-10
    if caught:
        assert "float32 precision: fit float64 data" in str(caught[0].message)
        assert -1e-12 < gap(newton_cg) < 1e-6
    else:
        assert_same_coef(newton_cg.coef_, reference.coef_, rtol=1e-5)
        assert -1e-12 < gap(newton_cg) < 1e-10

    with pytest.warns(ConvergenceWarning, match="float32 precision: fit float64 data"):
        lbfgs_tight = MultinomialLogitClassifier(solver="lbfgs", tol=1e-8, max_iter=1000)
        lbfgs_tight.fit(X32, y)
    assert -1e-12 < gap(lbfgs_tight) < 1e-6


def test_memory_layout_and_read_only_inputs_give_the_same_model():
    X, y = dataset("synthetic")  # read-only, C order
    a = MultinomialLogitClassifier(**TIGHT).fit(X, y)
    b = MultinomialLogitClassifier(**TIGHT).fit(np.asfortranarray(X), y)
    assert_same_coef(b.coef_, a.coef_, rtol=1e-6)


def peak_fit_memory(clf, X, y, *, stopped_early=False):
    """Peak bytes Python allocates during ``clf.fit(X, y)``.

    ``stopped_early``: the fit is cut short by max_iter on purpose, so its
    ConvergenceWarning is silenced.
    """
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            if stopped_early:
                warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(X, y)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    "params",
    [
        dict(solver="newton-cholesky"),
        dict(solver="newton-cg"),
        dict(solver="lbfgs"),
        dict(solver="lbfgs", l1_ratio=0.5),
    ],
)
def test_fit_does_not_copy_X(params):
    # What a fit adds on top of X is per-sample (n x K) and per-parameter
    # work, here far less than half of X (tracemalloc sees numpy's buffers).
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20000, 50))
    y = rng.integers(0, 3, size=20000)
    X.setflags(write=False)  # a fit must not write into X either
    for data in (X, np.asfortranarray(X), X.astype(np.float32)):
        clf = MultinomialLogitClassifier(max_iter=5, **params)
        peak = peak_fit_memory(clf, data, y, stopped_early=True)
        assert peak < 0.5 * data.nbytes, (peak, data.nbytes)


def test_a_default_fit_on_large_dense_X_adds_the_probabilities_and_a_few_vectors():
    # 200 000 x 50, K = 10: newton-cholesky keeps the n x K probabilities
    # between Hessian products; beyond them only a few per-sample vectors
    # (labels, weights, curvature) and blocks. Two copies of the probabilities
    # at once (an old cache next to a new one) made 0.48 of X here.
    rng = np.random.default_rng(0)
    n, K = 200_000, 10
    X = rng.normal(size=(n, 50))
    y = rng.integers(0, K, size=n)
    clf = MultinomialLogitClassifier(max_iter=5)
    peak = peak_fit_memory(clf, X, y, stopped_early=True)
    assert peak < 1.1 * (K + 5) * 8 * n, (peak / X.nbytes, peak / (8 * n))


@pytest.mark.parametrize("method", ["predict_proba", "predict", "decision_function"])
def test_prediction_adds_its_output_and_one_block(method):
    # float32 X with a model fitted on float64 data: the product casts X a
    # block at a time, not whole (which was 2 x X of float64).
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 50))
    clf = MultinomialLogitClassifier().fit(X, rng.integers(0, 4, size=2000))
    X_large = rng.normal(size=(200_000, 50)).astype(np.float32)
    tracemalloc.start()
    try:
        out = getattr(clf, method)(X_large)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.dtype.kind != "f" or out.dtype == np.float64
    assert peak < out.nbytes + 0.25 * X_large.nbytes, (peak / X_large.nbytes, out.nbytes)
    np.testing.assert_allclose(
        clf.predict_proba(X_large[:100]),
        softmax(X_large[:100].astype(np.float64) @ clf.coef_.T + clf.intercept_, axis=1),
        rtol=1e-12,
    )


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_sparse_X_is_never_densified(fmt):
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, 20000, size=80000), rng.integers(0, 2000, size=80000)
    X = sp.coo_matrix((rng.normal(size=80000), (rows, cols)), shape=(20000, 2000)).asformat(fmt)
    y = rng.integers(0, 3, size=20000)
    dense_bytes = 8 * X.shape[0] * X.shape[1]
    for solver in ("auto", "lbfgs", "newton-cg"):
        clf = MultinomialLogitClassifier(solver=solver, max_iter=3)
        peak = peak_fit_memory(clf, X, y, stopped_early=True)
        assert peak < 0.05 * dense_bytes, (peak, dense_bytes)


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_newton_cholesky_needs_its_hessian_not_dense_X(fmt):
    # The solver's documented cost is 12 bytes per Hessian entry; sparse X
    # itself is only densified a few hundred rows at a time.
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, 40000, size=40000), rng.integers(0, 300, size=40000)
    X = sp.coo_matrix((rng.normal(size=40000), (rows, cols)), shape=(40000, 300)).asformat(fmt)
    y = rng.integers(0, 3, size=40000)
    n_params = 3 * 301
    clf = MultinomialLogitClassifier(solver="newton-cholesky")
    peak = peak_fit_memory(clf, X, y)
    dense_bytes = 8 * X.shape[0] * X.shape[1]
    assert peak < 12 * n_params**2 + 0.05 * dense_bytes, (peak, dense_bytes)
    reference = MultinomialLogitClassifier(solver="lbfgs", **TIGHT).fit(X, y)
    assert_same_coef(clf.coef_, reference.coef_, rtol=1e-4)


def test_dataframe_input_records_feature_names():
    pd = pytest.importorskip("pandas")
    X, y = dataset("iris")
    frame = pd.DataFrame(X, columns=["sl", "sw", "pl", "pw"])
    clf = MultinomialLogitClassifier().fit(frame, pd.Series(y))
    np.testing.assert_array_equal(clf.feature_names_in_, ["sl", "sw", "pl", "pw"])
    assert clf.n_features_in_ == 4
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        from_array = clf.predict(X)
    np.testing.assert_array_equal(clf.predict(frame), from_array)


def test_pickle_round_trip():
    X, y = dataset("iris")
    clf = MultinomialLogitClassifier().fit(X, y)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))
    assert restored.get_params() == clf.get_params()


def test_warm_start_resumes_from_the_solution():
    X, y = dataset("digits_scaled")
    clf = MultinomialLogitClassifier(warm_start=True, tol=1e-6, max_iter=5000).fit(X, y)
    first = clf.coef_.copy()
    cold_iterations = clf.n_iter_[0]
    clf.fit(X, y)
    assert clf.n_iter_[0] <= 2 < cold_iterations
    assert_same_coef(clf.coef_, first, rtol=1e-5)
    # without warm_start the second fit starts from zero again
    cold = MultinomialLogitClassifier(tol=1e-6, max_iter=5000).fit(X, y)
    cold.fit(X, y)
    assert cold.n_iter_[0] == cold_iterations


def test_verbose_prints_objective_and_gradient(capsys):
    X, y = dataset("iris")
    MultinomialLogitClassifier(verbose=1).fit(X, y)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("iter")]
    assert len(lines) >= 3
    assert "objective" in lines[0] and "grad" in lines[0]
    objectives = [float(re.search(r"objective\S* (\S+)", line).group(1)) for line in lines]
    assert objectives[-1] < objectives[0]


def test_gridsearch_over_a_pipeline_in_parallel():
    X, y = load_digits(return_X_y=True)
    grid = GridSearchCV(
        make_pipeline(StandardScaler(), MultinomialLogitClassifier()),
        {"multinomiallogitclassifier__C": [0.01, 0.1, 1.0]},
        cv=3,
        n_jobs=2,
    ).fit(X, y)
    reference = GridSearchCV(
        make_pipeline(StandardScaler(), LogisticRegression()),
        {"logisticregression__C": [0.01, 0.1, 1.0]},
        cv=3,
        n_jobs=2,
    ).fit(X, y)
    # Same parameter name, same objective: nearly the same CV scores.
    np.testing.assert_allclose(
        grid.cv_results_["mean_test_score"], reference.cv_results_["mean_test_score"], atol=0.01
    )
    assert grid.best_score_ > 0.9


@pytest.mark.skipif(
    "sample_weight" not in inspect.signature(compute_class_weight).parameters,
    reason="this scikit-learn balances classes by unweighted counts",
)
def test_balanced_class_weight_with_sample_weight_matches_logistic_regression():
    X, y = dataset("synthetic")
    weight = weights_for(y)
    lr = LogisticRegression(
        class_weight="balanced", solver="newton-cholesky", tol=1e-12, max_iter=1000
    ).fit(X, y, sample_weight=weight)
    clf = MultinomialLogitClassifier(class_weight="balanced", solver="newton-cg", **TIGHT)
    clf.fit(X, y, sample_weight=weight)
    assert_same_coef(clf.coef_, lr.coef_)


def test_class_weight_may_name_classes_missing_from_a_fold():
    # As in LogisticRegression: a dict covering every class of y may name more
    # (a cross-validation fold can lack a rare class).
    X, y = dataset("iris")
    weights = {0: 1.0, 1: 2.0, 2: 0.5}
    a = MultinomialLogitClassifier(class_weight=weights, **TIGHT).fit(X, y)
    b = MultinomialLogitClassifier(class_weight={**weights, 3: 9.0}, **TIGHT).fit(X, y)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    with pytest.raises(ValueError, match=r"not in the data: \[3\].*\[2\] of the data have no"):
        MultinomialLogitClassifier(class_weight={0: 1.0, 1: 2.0, 3: 9.0}).fit(X, y)


def test_warm_start_after_the_classes_or_features_change_starts_cold():
    X, y = dataset("iris")
    clf = MultinomialLogitClassifier(warm_start=True, **TIGHT).fit(X[y < 2], y[y < 2])
    clf.fit(X, y)  # three classes now
    cold = MultinomialLogitClassifier(**TIGHT).fit(X, y)
    assert_same_coef(clf.coef_, cold.coef_)
    clf.fit(X[:, :3], y)  # fewer features
    assert clf.coef_.shape == (3, 3)


def test_non_canonical_sparse_input_gives_the_canonical_model():
    X, y = dataset("synthetic")
    X = np.where(np.abs(X) < 0.7, 0.0, X)
    canonical = sp.csr_matrix(X)
    # every stored value split into two halves at the same position
    coo = canonical.tocoo()
    doubled = sp.csr_matrix(
        (np.concatenate([coo.data / 2, coo.data / 2]),
         (np.concatenate([coo.row, coo.row]), np.concatenate([coo.col, coo.col]))),
        shape=X.shape,
    )  # fmt: skip
    doubled.has_canonical_format = False
    nnz_before = doubled.nnz
    a = MultinomialLogitClassifier(**TIGHT).fit(canonical, y)
    b = MultinomialLogitClassifier(**TIGHT).fit(doubled, y)
    assert_same_coef(b.coef_, a.coef_)
    assert doubled.nnz == nnz_before  # the caller's matrix is untouched


def test_verbose_accepts_booleans_like_logistic_regression(capsys):
    X, y = dataset("iris")
    MultinomialLogitClassifier(verbose=True).fit(X, y)
    assert "objective" in capsys.readouterr().out
    MultinomialLogitClassifier(verbose=False).fit(X, y)
    assert capsys.readouterr().out == ""


def test_defaults_reach_the_optimum_on_raw_digits_without_warning():
    X, y = load_digits(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = MultinomialLogitClassifier().fit(X, y)
    lr = LogisticRegression(solver="newton-cholesky", tol=1e-12, max_iter=1000).fit(X, y)
    _, y_index = np.unique(y, return_inverse=True)
    ours = loss_gradient(clf.coef_, clf.intercept_, X, y_index)[0]
    best = loss_gradient(lr.coef_, lr.intercept_, X, y_index)[0]
    assert -1e-12 <= (ours - best) / best <= 1e-6
