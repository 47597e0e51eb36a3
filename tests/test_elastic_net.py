"""L1 and elastic-net penalties: the optimum against saga, KKT conditions, exact zeros."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn
from sklearn.datasets import load_digits, load_iris, load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from skmultilogit import MultinomialLogitClassifier

TIGHT = dict(tol=1e-10, max_iter=20000)
SKLEARN_18 = tuple(int(part) for part in sklearn.__version__.split(".")[:2]) >= (1, 8)


def standardised(loader):
    X, y = loader(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def objective(coef, intercept, X, y, C, l1_ratio, sample_weight=None):
    """The elastic-net objective, written out independently of the package."""
    sample_weight = np.ones(len(y)) if sample_weight is None else sample_weight
    raw = np.asarray(X @ coef.T) + intercept
    raw -= raw.max(axis=1, keepdims=True)
    nll = np.log(np.exp(raw).sum(axis=1)) - raw[np.arange(len(y)), y]
    penalty = l1_ratio * np.abs(coef).sum() + 0.5 * (1 - l1_ratio) * (coef**2).sum()
    return C * sample_weight @ nll + penalty


def saga(X, y, C, l1_ratio):
    """LogisticRegression(solver="saga") on the same objective, run to a tight tol."""
    penalty = {} if SKLEARN_18 else {"penalty": "elasticnet"}
    model = LogisticRegression(
        C=C, l1_ratio=l1_ratio, solver="saga", tol=1e-12, max_iter=200000, **penalty
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y)


def kkt_violation(clf, X, y, C, l1_ratio, sample_weight=None):
    """Largest violation of the optimality conditions, from predict_proba alone.

    With G = C (P - Y)^T diag(s) X + (1 - l1_ratio) W: G_kj = -l1_ratio sign(W_kj)
    where W_kj != 0, |G_kj| <= l1_ratio where W_kj = 0; and C (P - Y)^T s = 0
    for the intercept. Divided by C sum(s), the scale on which tol is stated
    (a run may stop by precision at a gradient of sqrt(eps) = 1.5e-8 there).
    """
    sample_weight = np.ones(len(y)) if sample_weight is None else sample_weight
    proba = clf.predict_proba(X).astype(np.float64)
    residual = proba - np.eye(proba.shape[1])[np.searchsorted(clf.classes_, y)]
    residual *= sample_weight[:, None]
    coef = clf.coef_.astype(np.float64)
    grad = C * np.asarray(residual.T @ X) + (1 - l1_ratio) * coef
    nonzero = coef != 0
    violation = np.where(
        nonzero,
        np.abs(grad + l1_ratio * np.sign(coef)),
        np.maximum(np.abs(grad) - l1_ratio, 0.0),
    )
    worst = max(violation.max(), np.abs(C * residual.sum(axis=0)).max())
    return worst / (C * sample_weight.sum())


@pytest.mark.parametrize("loader", [load_iris, load_wine], ids=["iris", "wine"])
@pytest.mark.parametrize("l1_ratio", [1.0, 0.5, 0.1])
@pytest.mark.parametrize("C", [0.05, 1.0])
def test_same_optimum_as_saga(loader, l1_ratio, C):
    X, y = standardised(loader)
    ours = MultinomialLogitClassifier(C=C, l1_ratio=l1_ratio, **TIGHT).fit(X, y)
    reference = saga(X, y, C, l1_ratio)
    f_ours = objective(ours.coef_, ours.intercept_, X, y, C, l1_ratio)
    f_saga = objective(reference.coef_, reference.intercept_, X, y, C, l1_ratio)
    assert f_ours <= f_saga * (1 + 1e-12)
    assert f_ours == pytest.approx(f_saga, rel=1e-10)
    np.testing.assert_allclose(ours.coef_, reference.coef_, atol=1e-6)
    np.testing.assert_allclose(ours.predict_proba(X), reference.predict_proba(X), rtol=0, atol=1e-6)
    # exact zeros exactly where saga's coefficients vanish
    assert np.array_equal(ours.coef_ == 0, np.abs(reference.coef_) < 1e-8)


@pytest.mark.parametrize("l1_ratio", [1.0, 0.3])
def test_optimality_conditions_on_the_digits(l1_ratio):
    # saga needs a minute here; the conditions need only predict_proba.
    X, y = standardised(load_digits)
    clf = MultinomialLogitClassifier(C=0.1, l1_ratio=l1_ratio, **TIGHT).fit(X, y)
    assert kkt_violation(clf, X, y, 0.1, l1_ratio) < 2e-8
    n_zero = int((clf.coef_ == 0).sum())
    assert n_zero > 0.3 * clf.coef_.size  # a sparse model, with exact zeros
    # and the zeros are not cosmetic: the objective is minimal
    nudged = clf.coef_.copy()
    nudged[clf.coef_ == 0] = 1e-4
    assert objective(nudged, clf.intercept_, X, y, 0.1, l1_ratio) > objective(
        clf.coef_, clf.intercept_, X, y, 0.1, l1_ratio
    )


@pytest.mark.parametrize("solver", ["auto", "lbfgs", "newton-cholesky"])
def test_l1_ratio_zero_is_the_l2_model(solver):
    X, y = standardised(load_wine)
    reference = LogisticRegression(C=0.5, tol=1e-12, max_iter=10000).fit(X, y)
    zero = MultinomialLogitClassifier(C=0.5, l1_ratio=0.0, solver=solver, **TIGHT).fit(X, y)
    np.testing.assert_allclose(zero.coef_, reference.coef_, atol=1e-6)
    # the L2 optimum itself has columns summing to zero (scikit-learn does not
    # centre): the centring of the L2 fits is no change of the model
    np.testing.assert_allclose(reference.coef_.sum(axis=0), 0.0, atol=1e-6)
    # and l1_ratio -> 0 approaches it through the split solver
    tiny = MultinomialLogitClassifier(C=0.5, l1_ratio=1e-9, **TIGHT).fit(X, y)
    np.testing.assert_allclose(tiny.coef_, reference.coef_, atol=1e-6)


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_sparse_X_gives_the_dense_optimum(fmt):
    rng = np.random.default_rng(0)
    X = sp.random(400, 60, density=0.1, format=fmt, random_state=0)
    y = rng.integers(0, 4, size=400)
    dense = MultinomialLogitClassifier(C=2.0, l1_ratio=0.7, **TIGHT).fit(X.toarray(), y)
    sparse = MultinomialLogitClassifier(C=2.0, l1_ratio=0.7, **TIGHT).fit(X, y)
    np.testing.assert_allclose(sparse.coef_, dense.coef_, atol=1e-6)
    assert np.array_equal(sparse.coef_ == 0, dense.coef_ == 0)
    assert kkt_violation(sparse, X, y, 2.0, 0.7) < 2e-8
    assert kkt_violation(dense, X.toarray(), y, 2.0, 0.7) < 2e-8


def test_sample_weight_and_intercept_options():
    X, y = standardised(load_wine)
    weight = np.random.default_rng(1).integers(0, 4, size=len(y))
    weighted = MultinomialLogitClassifier(C=0.3, l1_ratio=0.5, **TIGHT)
    weighted.fit(X, y, sample_weight=weight)
    repeated = MultinomialLogitClassifier(C=0.3, l1_ratio=0.5, **TIGHT)
    repeated.fit(np.repeat(X, weight, axis=0), np.repeat(y, weight))
    np.testing.assert_allclose(weighted.coef_, repeated.coef_, atol=1e-7)
    assert kkt_violation(weighted, X, y, 0.3, 0.5, weight.astype(float)) < 2e-8

    no_intercept = MultinomialLogitClassifier(
        C=0.3, l1_ratio=0.5, fit_intercept=False, **TIGHT
    ).fit(X, y)
    np.testing.assert_array_equal(no_intercept.intercept_, 0.0)
    penalty = {} if SKLEARN_18 else {"penalty": "elasticnet"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference = LogisticRegression(
            C=0.3,
            l1_ratio=0.5,
            solver="saga",
            fit_intercept=False,
            tol=1e-12,
            max_iter=200000,
            **penalty,
        ).fit(X, y)
    np.testing.assert_allclose(no_intercept.coef_, reference.coef_, atol=1e-6)


def test_float32_data():
    X, y = standardised(load_wine)
    clf64 = MultinomialLogitClassifier(C=0.3, l1_ratio=1.0, **TIGHT).fit(X, y)
    with warnings.catch_warnings():
        # float32 objective values are noisy at 1e-7; a precision stop is fine
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf32 = MultinomialLogitClassifier(C=0.3, l1_ratio=1.0, tol=1e-6).fit(
            X.astype(np.float32), y
        )
    assert clf32.coef_.dtype == np.float32
    f64 = objective(clf64.coef_, clf64.intercept_, X, y, 0.3, 1.0)
    f32 = objective(
        clf32.coef_.astype(np.float64), clf32.intercept_.astype(np.float64), X, y, 0.3, 1.0
    )
    # float32 objective values are noisy at about 1e-7 relative
    assert 0 <= (f32 - f64) / f64 < 1e-6
    np.testing.assert_allclose(clf32.coef_, clf64.coef_, atol=2e-3)


def test_warm_start_reaches_the_cold_optimum_in_fewer_iterations():
    X, y = standardised(load_wine)
    clf = MultinomialLogitClassifier(C=0.1, l1_ratio=0.8, warm_start=True, **TIGHT).fit(X, y)
    clf.set_params(C=0.12).fit(X, y)
    cold = MultinomialLogitClassifier(C=0.12, l1_ratio=0.8, **TIGHT).fit(X, y)
    # Both at the optimum to rounding: the written-out optimality conditions
    # hold to ~1e-9 for either (1.2e-9 warm, 9.4e-10 cold) and the objectives
    # differ by one ulp, yet the coefficients by up to 6e-8 (2e-8 with the
    # numpy element-wise path): flat directions of the split problem, where
    # the float64 objective cannot tell them apart.
    for fit in (clf, cold):
        assert kkt_violation(fit, X, y, 0.12, 0.8) < 1e-8
    np.testing.assert_allclose(clf.coef_, cold.coef_, atol=2e-7)
    assert clf.n_iter_[0] < cold.n_iter_[0]


def test_columns_are_not_centred_under_l1():
    # The optimum of an L1 penalty over the K rows of a column is a median-like
    # shift, not the mean: centring would raise the objective and lose zeros.
    X, y = standardised(load_iris)
    clf = MultinomialLogitClassifier(C=0.5, l1_ratio=1.0, **TIGHT).fit(X, y)
    centred = clf.coef_ - clf.coef_.mean(axis=0)
    f = objective(clf.coef_, clf.intercept_, X, y, 0.5, 1.0)
    assert objective(centred, clf.intercept_, X, y, 0.5, 1.0) > f
    assert (clf.coef_ == 0).any()


def test_no_penalty_ignores_l1_ratio():
    X, y = standardised(load_wine)
    X = X[:, :3]  # not separable
    l2 = MultinomialLogitClassifier(C=np.inf, **TIGHT).fit(X, y)
    for solver in ("lbfgs", "newton-cholesky"):  # no L1 part, so any solver
        l1 = MultinomialLogitClassifier(C=np.inf, l1_ratio=1.0, solver=solver, **TIGHT)
        np.testing.assert_allclose(l1.fit(X, y).coef_, l2.coef_, atol=1e-7)


@pytest.mark.parametrize(
    "l1_ratio, error, match",
    [
        (-0.1, ValueError, r"l1_ratio must be >= 0"),
        (1.5, ValueError, r"l1_ratio must be in \[0, 1\]"),
        (np.nan, ValueError, "l1_ratio must be finite"),
        ("l1", TypeError, "l1_ratio must be a real number"),
    ],
)
def test_invalid_l1_ratio(l1_ratio, error, match):
    X, y = standardised(load_iris)
    with pytest.raises(error, match=match):
        MultinomialLogitClassifier(l1_ratio=l1_ratio).fit(X, y)


@pytest.mark.parametrize("solver", ["newton-cg", "newton-cholesky"])
def test_newton_solvers_refuse_l1(solver):
    X, y = standardised(load_iris)
    with pytest.raises(ValueError, match=f"needs solver='lbfgs' or 'auto': solver='{solver}'"):
        MultinomialLogitClassifier(l1_ratio=0.5, solver=solver).fit(X, y)


@pytest.mark.parametrize("l1_ratio", [1.0, 0.5])
def test_a_weak_l1_penalty_resolves_its_zeros_at_the_default_tol(l1_ratio):
    # At C = 1e4 the L1 strength on tol's scale, l1_ratio / (C sum(s)), is
    # 5.6e-7 on the wine data, below tol = 1e-6: a gradient test at tol left
    # coefficients nonzero whose gradient is within the strength (35 nonzero
    # where the optimum has 19, 12 % above it in objective). The test is
    # against a tenth of the strength; the optimality conditions, from
    # predict_proba alone, hold to it.
    X, y = standardised(load_wine)
    C = 1e4
    strength = l1_ratio / (C * len(y))
    for solver, max_iter in (("lbfgs", 2000), ("auto", 100)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model = MultinomialLogitClassifier(
                C=C, l1_ratio=l1_ratio, solver=solver, max_iter=max_iter
            ).fit(X, y)
        assert kkt_violation(model, X, y, C, l1_ratio) <= max(0.1 * strength, 1.5e-8)
    # L-BFGS-B on the split does not reach it in 50 iterations: a warning that says why
    with pytest.warns(ConvergenceWarning, match=r"above (5.6|2.8)e-08 \(tol=1e-06, capped"):
        MultinomialLogitClassifier(C=C, l1_ratio=l1_ratio, solver="lbfgs", max_iter=50).fit(X, y)


@pytest.mark.parametrize("C, l1_ratio", [(1.0, 0.5), (1.0, 1.0), (100.0, 1.0)])
def test_small_problems_reach_the_optimum_in_few_iterations(C, l1_ratio):
    # On the raw wine data (features in units from 0.1 to 1000) L-BFGS-B on
    # the split needs hundreds of iterations, and at the default max_iter
    # stopped short with a warning; "auto" takes proximal Newton on these 42
    # parameters: the optimality conditions met in a few, and run to a tight
    # tol, at or below the split's objective run to it.
    X, y = load_wine(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        auto = MultinomialLogitClassifier(C=C, l1_ratio=l1_ratio).fit(X, y)
    assert auto.n_iter_[0] <= 20
    assert kkt_violation(auto, X, y, C, l1_ratio) <= 0.1 * l1_ratio / (C * len(y))
    tight = MultinomialLogitClassifier(C=C, l1_ratio=l1_ratio, **TIGHT).fit(X, y)
    split = MultinomialLogitClassifier(C=C, l1_ratio=l1_ratio, solver="lbfgs", **TIGHT).fit(X, y)
    f_tight = objective(tight.coef_, tight.intercept_, X, y, C, l1_ratio)
    f_split = objective(split.coef_, split.intercept_, X, y, C, l1_ratio)
    assert f_tight <= f_split * (1 + 1e-12)
    assert tight.n_iter_[0] <= 30 < split.n_iter_[0]
    f_auto = objective(auto.coef_, auto.intercept_, X, y, C, l1_ratio)
    assert f_auto == pytest.approx(f_tight, rel=1e-8)


def test_the_class_shift_step_minimises_the_model_along_each_feature():
    # Adding t to one feature's K coefficients leaves the data term alone;
    # with no L2 part the model is flat along it but for the L1 norm, and
    # neither coordinate descent nor Newton steps move along it. The step
    # must leave, for every feature, the model written out here minimal
    # along that direction (t = 0 best on a grid and at every breakpoint)
    # and the whole model no higher; and rounding in the model's gradient
    # along a flat direction (float32 X) must not move it far.
    from types import SimpleNamespace

    from skmultilogit._solvers._proximal import _class_shifts

    rng = np.random.default_rng(3)
    n_classes, n_features, n_rows = 4, 5, 80
    n_coef = n_classes * n_features
    X = rng.normal(size=(n_rows, n_features))
    proba = softmax_rows(rng.normal(size=(n_rows, n_classes)))
    # the data term's Hessian in the coefficients: sum_i (diag(p) - p p^T) (x) x x^T,
    # class-major (coefficient k * d + j)
    data_hessian = np.zeros((n_coef, n_coef))
    for x_row, p in zip(X, proba, strict=True):
        data_hessian += np.kron(np.diag(p) - np.outer(p, p), np.outer(x_row, x_row))
    for l2 in (0.0, 0.3):
        l2_curvature = l2 * rng.uniform(0.5, 2.0, size=n_features)  # lambda_2 / sigma_j^2
        penalty = np.tile(l2_curvature, n_classes)
        hessian = data_hessian + np.diag(penalty)
        weight = rng.uniform(0.5, 2.0, size=n_features)
        problem = SimpleNamespace(
            loss=SimpleNamespace(n_classes=n_classes, n_features=n_features),
            n_coef=n_coef,
            group_weights=np.tile(weight, n_classes),
        )
        x = rng.normal(size=n_coef)
        # a data gradient sums to 0 over the classes; the L2 part's is lambda_2 W
        data_gradient = rng.normal(size=(n_classes, n_features))
        gradient = (data_gradient - data_gradient.mean(axis=0)).ravel() + penalty * x
        u = rng.normal(size=n_coef) * (rng.random(n_coef) < 0.8)
        residual = gradient + hessian @ (u - x)
        start_u, start_residual = u.copy(), residual.copy()

        def model(v, x=x, g=gradient, H=hessian, w=problem.group_weights):
            step = v - x
            return g @ step + 0.5 * step @ H @ step + w @ np.abs(v)

        _class_shifts(u, residual, hessian, problem, l2_curvature)
        assert model(u) <= model(start_u) + 1e-12
        np.testing.assert_allclose(residual, start_residual + hessian @ (u - start_u), atol=1e-12)
        for j in range(n_features):
            shift = np.zeros(n_coef)
            shift[j::n_features] = 1.0
            trials = np.concatenate([np.linspace(-4, 4, 801), -u[j::n_features]])
            values = [model(u + t * shift) for t in trials]
            assert model(u) <= min(values) + 1e-12

        # rounding along the flat directions: the class sums of the residual
        # off zero by 1e-7 of it, a weak L1 weight; with no L2 part the
        # minimiser along a shift is a breakpoint, within the coefficients' range
        noisy = start_residual + 1e-7 * np.abs(start_residual).max() * rng.normal(size=n_coef)
        u = start_u.copy()
        weak = SimpleNamespace(**{**vars(problem), "group_weights": 1e-9 * problem.group_weights})
        _class_shifts(u, noisy, hessian, weak, l2_curvature)
        if not l2:
            assert np.abs(u - start_u).max() <= 2 * np.abs(start_u).max()


def softmax_rows(raw):
    raw = raw - raw.max(axis=1, keepdims=True)
    return np.exp(raw) / np.exp(raw).sum(axis=1, keepdims=True)


def test_auto_takes_the_split_above_the_parameter_limit(monkeypatch):
    from skmultilogit._solvers import _driver

    ran = []
    proximal = _driver.PENALTY_SOLVER_RUNS["proximal-newton"]

    def recording(*args, **kwargs):
        ran.append(True)
        return proximal(*args, **kwargs)

    monkeypatch.setitem(_driver.PENALTY_SOLVER_RUNS, "proximal-newton", recording)
    X, y = standardised(load_wine)  # 3 x (13 + 1) = 42 parameters
    MultinomialLogitClassifier(l1_ratio=0.5).fit(X, y)
    assert ran == [True]
    monkeypatch.setattr(_driver, "PROXIMAL_AUTO_MAX_PARAMS", 41)
    MultinomialLogitClassifier(l1_ratio=0.5).fit(X, y)
    MultinomialLogitClassifier(l1_ratio=0.5, coef_bounds=(-1.0, 1.0)).fit(X, y)
    assert ran == [True]
    monkeypatch.setattr(_driver, "PROXIMAL_AUTO_MAX_PARAMS", 42)
    # a box holds the coefficients: only L-BFGS-B takes it
    MultinomialLogitClassifier(l1_ratio=0.5, coef_bounds=(-1.0, 1.0)).fit(X, y)
    MultinomialLogitClassifier(l1_ratio=0.5, solver="lbfgs").fit(X, y)
    assert ran == [True]


def test_float32_data_with_a_weak_pure_l1_reach_the_float64_optimum():
    # The model's gradient and Hessian carry float32's rounding, which along a
    # flat class shift once made a step of 7.8e7: the fit stopped after one
    # iteration, thousands of times above the optimum.
    X, y = load_wine(return_X_y=True)
    for C in (1e4, 1e6):
        optimum = MultinomialLogitClassifier(C=C, l1_ratio=1.0, **TIGHT).fit(X, y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # float32's precision
            fit32 = MultinomialLogitClassifier(C=C, l1_ratio=1.0).fit(X.astype(np.float32), y)
        f64 = objective(optimum.coef_, optimum.intercept_, X, y, C, 1.0)
        f32 = objective(
            fit32.coef_.astype(np.float64), fit32.intercept_.astype(np.float64), X, y, C, 1.0
        )
        assert (f32 - f64) / f64 < 1e-5


def test_collinear_one_hot_features_with_pure_l1():
    # Full one-hot blocks beside the intercept: X has flat directions that no
    # penalty curves, where least squares' minimum-norm Newton step never
    # reached a zero (100 iterations, 23 s, a warning, above the split).
    rng = np.random.default_rng(0)
    categories = rng.integers(0, 5, size=(1000, 3))
    X = np.hstack([np.eye(5)[categories[:, i]] for i in range(3)] + [rng.normal(size=(1000, 5))])
    y = np.argmax(X @ rng.normal(size=(20, 4)) + rng.gumbel(size=(1000, 4)), axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        auto = MultinomialLogitClassifier(C=1e4, l1_ratio=1.0).fit(X, y)
    assert auto.n_iter_[0] <= 20
    with warnings.catch_warnings():
        # the split stops by precision short of tol=1e-10 here (1.7e-6)
        warnings.simplefilter("ignore", ConvergenceWarning)
        split = MultinomialLogitClassifier(C=1e4, l1_ratio=1.0, solver="lbfgs", **TIGHT)
        split.fit(X, y)
    f_auto = objective(auto.coef_, auto.intercept_, X, y, 1e4, 1.0)
    f_split = objective(split.coef_, split.intercept_, X, y, 1e4, 1.0)
    assert f_auto <= f_split * (1 + 1e-8)


def test_proximal_newton_hands_over_to_the_split_where_its_active_sets_churn(monkeypatch):
    # Past its budget of factorisations proximal Newton stops and L-BFGS-B on
    # the split goes on from its last iterate: the same optimum, the
    # iterations of both counted.
    from skmultilogit._solvers import _proximal

    X, y = standardised(load_wine)
    reference = MultinomialLogitClassifier(C=3.0, l1_ratio=0.7, **TIGHT).fit(X, y)
    monkeypatch.setattr(_proximal, "FACTORISATIONS_PER_PARAMETER", 0)
    handed_over = MultinomialLogitClassifier(C=3.0, l1_ratio=0.7, **TIGHT).fit(X, y)
    f_reference = objective(reference.coef_, reference.intercept_, X, y, 3.0, 0.7)
    f_handed = objective(handed_over.coef_, handed_over.intercept_, X, y, 3.0, 0.7)
    assert f_handed == pytest.approx(f_reference, rel=1e-10)
    assert kkt_violation(handed_over, X, y, 3.0, 0.7) < 2e-8
    # L-BFGS-B's iterations: more than proximal Newton's alone
    assert handed_over.n_iter_[0] > reference.n_iter_[0]


@pytest.mark.parametrize("l1_ratio", [0.5, 1.0])
def test_duplicated_features_converge_without_handing_over(l1_ratio, monkeypatch):
    # Five exact copies of each feature: the optimum spreads a feature's
    # weight over its copies, and the model's Newton steps, capped at five a
    # call, dropped a copy each while the sweeps brought them back, until
    # the budget of factorisations ran out and the split took over (and
    # warned at max_iter).
    from skmultilogit._solvers import _driver

    handed_over = []
    original = _driver._run

    def recording(solver, *args, **kwargs):
        handed_over.append(solver == "lbfgs")
        return original(solver, *args, **kwargs)

    monkeypatch.setattr(_driver, "_run", recording)
    for seed in range(4):
        rng = np.random.default_rng(seed)
        X0 = rng.normal(size=(500, 8))
        y = np.argmax(X0 @ rng.normal(size=(8, 4)) + rng.gumbel(size=(500, 4)), axis=1)
        X = np.hstack([X0] * 5)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            auto = MultinomialLogitClassifier(C=1e3, l1_ratio=l1_ratio).fit(X, y)
        assert auto.n_iter_[0] <= 20
        assert kkt_violation(auto, X, y, 1e3, l1_ratio) <= 0.1 * l1_ratio / (1e3 * len(y))
    assert not any(handed_over)


def test_fewer_rows_than_parameters_take_the_split(monkeypatch):
    # There a weak L1 penalty leaves the restricted Hessians near singular
    # and the active sets lose one coefficient per factorisation (40 x 50,
    # K = 4, C = 1e5: 103 times the split's time).
    from skmultilogit._solvers import _driver

    ran = []
    proximal = _driver.PENALTY_SOLVER_RUNS["proximal-newton"]
    monkeypatch.setitem(
        _driver.PENALTY_SOLVER_RUNS,
        "proximal-newton",
        lambda *args, **kwargs: ran.append(True) or proximal(*args, **kwargs),
    )
    X, y = standardised(load_wine)  # 42 parameters
    rows = np.random.default_rng(0).permutation(len(y))[:42]  # all three classes
    MultinomialLogitClassifier(l1_ratio=1.0).fit(X[rows[:41]], y[rows[:41]])
    assert ran == []
    MultinomialLogitClassifier(l1_ratio=1.0).fit(X[rows], y[rows])
    assert ran == [True]


def test_a_hand_over_says_so_in_its_warning(monkeypatch):
    from skmultilogit._solvers import _proximal

    monkeypatch.setattr(_proximal, "FACTORISATIONS_PER_PARAMETER", 0)
    X, y = load_wine(return_X_y=True)
    with pytest.warns(
        ConvergenceWarning,
        match=r"proximal-newton \(whose active sets kept changing, \d+ iterations\), "
        r"then lbfgs on the split, stopped after 5 iterations",
    ):
        MultinomialLogitClassifier(C=100.0, l1_ratio=1.0, max_iter=5).fit(X, y)


@pytest.mark.parametrize("C", [100.0, 1e4])
def test_small_problems_go_on_past_tol_to_the_optimum(C):
    # A subgradient within tol (capped at a tenth of the L1 strength) left
    # the objective 3.2e-4 of itself above its minimum on these 204
    # parameters at C = 1e4 (7.7e-5 at C = 100): a strong L1 penalty against
    # a weak curvature. Proximal Newton goes on while its model predicts a
    # decrease of more than 1e-10 of F.
    X, y = load_digits(return_X_y=True)
    keep = y < 4
    X, y = StandardScaler().fit_transform(X[keep][:, :50]), y[keep]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        auto = MultinomialLogitClassifier(C=C, l1_ratio=1.0).fit(X, y)
    split = MultinomialLogitClassifier(C=C, l1_ratio=1.0, solver="lbfgs", **TIGHT).fit(X, y)
    f_auto = objective(auto.coef_, auto.intercept_, X, y, C, 1.0)
    f_split = objective(split.coef_, split.intercept_, X, y, C, 1.0)
    assert f_auto <= f_split * (1 + 1e-10)
