"""Box constraints on the coefficients (``coef_bounds``).

The reference is a direct ``scipy.optimize.minimize(method="L-BFGS-B")``
solve of the objective written out here, in the user's coordinates, with
the bounds handed to scipy as they are (the L1 part, where there is one,
as the split ``W = W+ - W-`` over the two halves' boxes).
"""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import minimize
from scipy.special import logsumexp, softmax
from sklearn.datasets import load_iris, load_wine
from sklearn.preprocessing import StandardScaler

from skmultilogit import MultinomialLogitClassifier, MultinomialLogitClassifierCV, inference


def written_out(X, y, weight, C, alpha, fit_intercept, K, penalty_scale=None):
    """``f(w)`` and its gradient: ``C sum s_i (-log P) + alpha |W|_1 + (1 - alpha)/2 |W|^2``.

    ``w`` is ``[W+, W-, b]`` when ``alpha > 0`` (the L1 part linear in the
    halves), else ``[W, b]``. With ``penalty_scale`` ``s`` the penalty is on
    ``W diag(s)^-1`` (the coefficients of features divided by ``s``).
    """
    d = X.shape[1]
    Y = np.eye(K)[y]
    scale = np.ones(d) if penalty_scale is None else penalty_scale

    def f(w):
        if alpha > 0:
            plus, minus = w[: K * d], w[K * d : 2 * K * d]
            coef, rest = (plus - minus).reshape(K, d), w[2 * K * d :]
        else:
            coef, rest = w[: K * d].reshape(K, d), w[K * d :]
        intercept = rest if fit_intercept else np.zeros(K)
        Z = np.asarray(X @ coef.T) + intercept
        value = C * weight @ (logsumexp(Z, axis=1) - Z[np.arange(len(y)), y])
        value += 0.5 * (1 - alpha) * np.sum((coef / scale) ** 2)
        R = C * weight[:, None] * (softmax(Z, axis=1) - Y)
        grad_coef = np.asarray(X.T @ R).T + (1 - alpha) * coef / scale**2
        grad_intercept = [R.sum(axis=0)] if fit_intercept else []
        if alpha > 0:
            l1 = np.tile(alpha / scale, K)
            value += l1 @ (plus + minus)
            halves = [grad_coef.ravel() + l1, l1 - grad_coef.ravel()]
            return value, np.concatenate(halves + grad_intercept)
        return value, np.concatenate([grad_coef.ravel()] + grad_intercept)

    return f


def reference_fit(X, y, lower, upper, *, C=1.0, alpha=0.0, weight=None, fit_intercept=True):
    """The bounded optimum by scipy's L-BFGS-B on the written-out objective: (coef, intercept)."""
    K = int(y.max()) + 1
    d = X.shape[1]
    weight = np.ones(len(y)) if weight is None else weight
    # solved for V = W diag(sd) on X diag(sd)^-1 (the L2 penalty then
    # |V diag(sd)^-1|^2 / 2): on raw features, L-BFGS-B on W itself stopped
    # with a projected gradient of 8e-5, 3e-6 away from the optimum in W
    sd = np.sqrt(
        np.asarray(X.multiply(X).mean(axis=0)).ravel() if sp.issparse(X) else (X**2).mean(axis=0)
    )
    sd = np.where(sd > 0, sd, 1.0)
    X = X @ sp.diags(1 / sd) if sp.issparse(X) else X / sd
    lower, upper = (np.broadcast_to(bound, (K, d)) * sd for bound in (lower, upper))
    lower, upper = lower.ravel(), upper.ravel()
    free = [(None, None)] * (K if fit_intercept else 0)
    if alpha > 0:
        zero = np.zeros(K * d)
        halves = [
            (np.maximum(lower, zero), np.maximum(upper, zero)),
            (np.maximum(-upper, zero), np.maximum(-lower, zero)),
        ]
        box = [pair for low, high in halves for pair in zip(low, high, strict=True)]
    else:
        box = list(zip(lower, upper, strict=True))
    box = [(None if np.isinf(a) else a, None if np.isinf(b) else b) for a, b in box] + free
    start = np.clip(np.zeros(len(box)), *np.array(box, dtype=float).T)
    w = np.nan_to_num(start)
    function = written_out(X, y, weight, C, alpha, fit_intercept, K, penalty_scale=sd)
    value = np.inf
    # restarted while that still lowers the objective
    for _ in range(20):
        result = minimize(
            function,
            w,
            jac=True,
            method="L-BFGS-B",
            bounds=box,
            options={
                "gtol": 1e-13,
                "ftol": 0.0,
                "maxiter": 50_000,
                "maxfun": 100_000,
                "maxcor": 30,
            },
        )
        if not result.fun < value:
            break
        w, value = result.x, result.fun
    if alpha > 0:
        coef = w[: K * d] - w[K * d : 2 * K * d]
        rest = w[2 * K * d :]
    else:
        coef, rest = w[: K * d], w[K * d :]
    intercept = rest if fit_intercept else np.zeros(K)
    return coef.reshape(K, d) / sd, intercept, value


def objective(model, X, y, C, alpha, weight=None):
    K, d = model.coef_.shape
    weight = np.ones(len(y)) if weight is None else weight
    w = np.concatenate([model.coef_.ravel(), model.intercept_])
    return written_out(X, y, weight, C, 0.0, True, K)(w)[0] + alpha * (
        np.abs(model.coef_).sum() - 0.5 * np.sum(model.coef_**2)
    )


@pytest.fixture(scope="module")
def wine():
    X, y = load_wine(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def sparse_problem():
    rng = np.random.default_rng(0)
    X = sp.random(400, 30, density=0.2, format="csr", random_state=1) * 3.0
    coef = rng.normal(size=(4, 30))
    y = np.argmax(np.asarray(X @ coef.T) + rng.gumbel(size=(400, 4)), axis=1)
    return X, y, rng.uniform(0.5, 2.0, size=400)


CASES = {
    "wine, non-negative": dict(lower=0.0, upper=np.inf),
    "wine, a box per class and feature": dict(
        lower=np.linspace(-0.8, 0.1, 13) * np.array([[1.0], [0.5], [2.0]]),
        upper=np.linspace(0.2, 1.5, 13),
    ),
    "wine, C=100, symmetric box": dict(lower=-0.3, upper=0.3, C=100.0),
    "wine, elastic net in a box": dict(lower=-0.2, upper=np.inf, C=10.0, alpha=0.5),
    "wine, lasso with bounds away from zero": dict(
        lower=np.r_[0.05, np.full(12, -np.inf)], upper=np.r_[np.inf, np.full(12, 0.4)], alpha=1.0
    ),
    "wine, no intercept": dict(lower=-0.5, upper=0.5, fit_intercept=False),
}


def test_bounds_hold_in_the_users_units_on_raw_features():
    # raw wine: proline in the thousands, hue below 2 (the solvers rescale
    # such features; the box is on the user's coefficients)
    X, y = load_wine(return_X_y=True)
    lower = np.full(13, -0.5)
    upper = np.full(13, 0.5)
    lower[12], upper[12] = -0.002, 0.001  # proline
    model = MultinomialLogitClassifier(coef_bounds=(lower, upper), tol=1e-10, max_iter=5000)
    model.fit(X, y)
    coef, _, value = reference_fit(X, y, lower, upper)
    assert model.coef_[:, 12].max() == 0.001
    np.testing.assert_allclose(model.coef_, coef, rtol=0, atol=1e-6)
    assert objective(model, X, y, 1.0, 0.0) <= value * (1 + 1e-10)


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bounded_fits_equal_a_direct_bounded_solve(wine, case):
    X, y = wine
    settings = dict(CASES[case])
    lower, upper = settings.pop("lower"), settings.pop("upper")
    C, alpha = settings.pop("C", 1.0), settings.pop("alpha", 0.0)
    fit_intercept = settings.pop("fit_intercept", True)
    model = MultinomialLogitClassifier(
        C=C,
        l1_ratio=alpha,
        coef_bounds=(lower, upper),
        tol=1e-10,
        max_iter=5000,
        fit_intercept=fit_intercept,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(X, y)
    coef, intercept, value = reference_fit(
        X, y, lower, upper, C=C, alpha=alpha, fit_intercept=fit_intercept
    )
    assert np.all(model.coef_ >= np.broadcast_to(lower, coef.shape))
    assert np.all(model.coef_ <= np.broadcast_to(upper, coef.shape))
    np.testing.assert_allclose(model.coef_, coef, rtol=0, atol=1e-6)
    np.testing.assert_allclose(
        model.intercept_ - model.intercept_.mean(), intercept - intercept.mean(), rtol=0, atol=1e-6
    )
    assert objective(model, X, y, C, alpha) <= value * (1 + 1e-12)
    # the box holds some coefficients on a bound: not the unbounded optimum
    assert np.isin(model.coef_, np.r_[np.ravel(lower), np.ravel(upper)]).any()


def test_sparse_weighted_and_binary_bounded_fits_equal_a_direct_bounded_solve():
    X, y, weight = sparse_problem()
    model = MultinomialLogitClassifier(C=2.0, coef_bounds=(-0.25, 0.6), tol=1e-10, max_iter=5000)
    model.fit(X, y, sample_weight=weight)
    coef, intercept, _ = reference_fit(X, y, -0.25, 0.6, C=2.0, weight=weight)
    np.testing.assert_allclose(model.coef_, coef, rtol=0, atol=1e-6)
    # two classes: the two-row model, each row in its own box (no w_0 = -w_1)
    binary = y % 2
    lower = np.array([[-np.inf], [0.0]])
    model = MultinomialLogitClassifier(coef_bounds=(lower, np.inf), tol=1e-10, max_iter=5000)
    model.fit(X.toarray(), binary)
    coef, _, _ = reference_fit(X.toarray(), binary, lower, np.inf)
    np.testing.assert_allclose(model.coef_, coef, rtol=0, atol=1e-6)
    assert (model.coef_[1] >= 0).all() and not np.allclose(model.coef_[0], -model.coef_[1])


def test_infinite_bounds_are_the_unbounded_fit(wine):
    X, y = wine
    for solver in ("lbfgs", "newton-cg", "newton-cholesky"):
        plain = MultinomialLogitClassifier(solver=solver).fit(X, y)
        boxed = MultinomialLogitClassifier(solver=solver, coef_bounds=(-np.inf, np.inf))
        boxed.fit(X, y)
        np.testing.assert_array_equal(boxed.coef_, plain.coef_)
        np.testing.assert_array_equal(boxed.intercept_, plain.intercept_)


def test_a_warm_start_outside_the_box_ends_at_the_bounded_optimum(wine):
    X, y = wine
    model = MultinomialLogitClassifier(warm_start=True, tol=1e-10, max_iter=5000).fit(X, y)
    assert (model.coef_ < 0).any()
    model.set_params(coef_bounds=(0.0, np.inf)).fit(X, y)
    coef, _, _ = reference_fit(X, y, 0.0, np.inf)
    np.testing.assert_allclose(model.coef_, coef, rtol=0, atol=1e-6)


def test_the_cv_estimator_fits_every_value_in_the_box():
    X, y = load_iris(return_X_y=True)
    cv = MultinomialLogitClassifierCV(Cs=[0.1, 1.0, 10.0], cv=3, coef_bounds=(-0.5, 2.0), tol=1e-10)
    cv.fit(X, y)
    paths = cv.coefs_paths_[..., : X.shape[1]]
    assert paths.min() >= -0.5 and paths.max() <= 2.0
    assert np.isclose(paths, -0.5).any()
    coef, _, _ = reference_fit(X, y, -0.5, 2.0, C=cv.C_)
    np.testing.assert_allclose(cv.coef_, coef, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("coef_bounds", "error", "match"),
    [
        ((1.0, 0.0), ValueError, r"lower > upper for 39 coefficient\(s\), the first at class"),
        (
            (np.zeros((2, 13)), 1.0),
            ValueError,
            r"shape \(2, 13\) does not broadcast to .*\(3, 13\)",
        ),
        ((0.0, [1.0, np.nan] * 6 + [1.0]), ValueError, "upper bound contains NaN"),
        ((np.inf, np.inf), ValueError, "lower bound of inf"),
        (0.5, TypeError, r"must be a pair \(lower, upper\)"),
        ((0.0, 1.0, 2.0), ValueError, "got 3 items"),
        (("low", 1.0), TypeError, "lower bound must be a number"),
    ],
)
def test_bad_bounds_are_refused_with_a_clear_error(wine, coef_bounds, error, match):
    X, y = wine
    with pytest.raises(error, match=match):
        MultinomialLogitClassifier(coef_bounds=coef_bounds).fit(X, y)
    with pytest.raises(error, match=match):
        MultinomialLogitClassifierCV(Cs=[1.0], cv=2, coef_bounds=coef_bounds).fit(X, y)


@pytest.mark.parametrize("solver", ["newton-cg", "newton-cholesky"])
def test_newton_solvers_refuse_finite_bounds(wine, solver):
    X, y = wine
    with pytest.raises(
        ValueError, match=f"coef_bounds needs solver='lbfgs' or 'auto': solver='{solver}'"
    ):
        MultinomialLogitClassifier(solver=solver, coef_bounds=(0.0, np.inf)).fit(X, y)


def test_inference_refuses_a_bounded_model(wine):
    X, y = wine
    model = MultinomialLogitClassifier(coef_bounds=(0.0, np.inf)).fit(X, y)
    with pytest.raises(ValueError, match="inference needs a model fitted without coef_bounds"):
        inference(model, X, y)


def test_bounded_coefficients_never_leave_the_box_by_rounding():
    # features of very different scales: the box in the solvers' coordinates
    # is lower * sigma, and V / sigma could miss lower by an ulp
    X, y = load_wine(return_X_y=True)
    rng = np.random.default_rng(3)
    X = X * 10.0 ** rng.uniform(-3, 3, size=13)
    coef = MultinomialLogitClassifier(tol=1e-8, max_iter=3000).fit(X, y).coef_
    for _ in range(4):
        lower = coef * rng.uniform(0.2, 0.8, size=coef.shape) - np.abs(coef) * 0.1
        upper = lower + np.abs(coef) * rng.uniform(0.1, 0.5, size=coef.shape)
        model = MultinomialLogitClassifier(coef_bounds=(lower, upper), max_iter=3000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X, y)
        assert np.all(model.coef_ >= lower) and np.all(model.coef_ <= upper)


def test_none_is_no_bound_and_extra_dimensions_are_refused(wine):
    X, y = wine
    plain = MultinomialLogitClassifier(coef_bounds=(0.0, np.inf)).fit(X, y)
    with_none = MultinomialLogitClassifier(coef_bounds=(0.0, None)).fit(X, y)
    np.testing.assert_array_equal(with_none.coef_, plain.coef_)
    with pytest.raises(ValueError, match=r"shape \(1, 3, 13\) does not broadcast"):
        MultinomialLogitClassifier(coef_bounds=(np.zeros((1, 3, 13)), 1.0)).fit(X, y)


@pytest.mark.parametrize("C", [1e-20, 1e-300])
@pytest.mark.parametrize("box", [(0.1, 1.0), (-1.0, -0.1)])
@pytest.mark.parametrize("l1_ratio", [0.0, 0.5])
def test_a_tiny_C_with_a_box_excluding_zero_still_fits_its_intercepts(wine, C, box, l1_ratio):
    # The penalty then pins every coefficient to the bound nearest 0, and
    # its value there (1e17 at C = 1e-20) dwarfs the data term: the
    # intercepts must still be the data term's optimum for those
    # coefficients (a direct solve over the intercepts alone), with no
    # warning. (Before, 0.09 off, with a warning blaming float64.)
    X, y = wine
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = MultinomialLogitClassifier(C=C, coef_bounds=box, l1_ratio=l1_ratio).fit(X, y)
    nearest = min(box, key=abs)
    np.testing.assert_array_equal(model.coef_, nearest)
    logits = X @ model.coef_.T
    rows = np.arange(len(y))

    def data_term(intercept):
        Z = logits + intercept
        P = softmax(Z, axis=1)
        value = logsumexp(Z, axis=1).sum() - Z[rows, y].sum()
        return value, P.sum(axis=0) - np.bincount(y, minlength=3)

    best = minimize(data_term, np.zeros(3), jac=True, method="BFGS", options={"gtol": 1e-12}).x
    np.testing.assert_allclose(
        model.intercept_ - model.intercept_.mean(), best - best.mean(), rtol=0, atol=1e-6
    )


def test_float32_coefficients_stay_in_a_box_float32_cannot_represent(wine):
    # coef_ takes X's dtype: float32's nearest numbers to -0.2 and 0.3 lie
    # outside [-0.2, 0.3], and bound coefficients cast to them left the box
    # (by 1.2e-8) as the float64 bounds the user gave say it.
    X, y = wine
    lower, upper = np.full((3, 13), -0.2), np.full((3, 13), 0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # float32's L-BFGS-B may stop at its noise floor
        model = MultinomialLogitClassifier(coef_bounds=(lower, upper)).fit(X.astype(np.float32), y)
    assert model.coef_.dtype == np.float32
    assert model.coef_.max() > 0.29  # some on the upper bound
    assert np.all(model.coef_ >= lower) and np.all(model.coef_ <= upper)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_cv_estimators_averaged_coefficients_stay_in_the_box(wine, dtype):
    # refit=False averages the folds' coefficients: three on the bound 0.1
    # averaged to 0.1 + 1.4e-17 in float64 (and float32 rounds 0.1 up)
    X, y = wine
    model = MultinomialLogitClassifierCV(Cs=[1, 10], cv=3, refit=False, coef_bounds=(-0.1, 0.1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # float32's L-BFGS-B may stop at its noise floor
        model.fit(X.astype(dtype), y)
    assert model.coef_.max() > 0.09  # some on the upper bound
    assert np.all(model.coef_ >= -0.1) and np.all(model.coef_ <= 0.1)


@pytest.mark.parametrize(
    "load, C", [(load_iris, 1e-10), (load_iris, 1e-12), (load_wine, 1e-14), (load_wine, 1e-16)]
)
@pytest.mark.parametrize("box", [(-10.0, 10.0), (0.0, np.inf), (-np.inf, 1e-12)])
@pytest.mark.parametrize("sparse", [False, True])
def test_a_tiny_C_on_raw_features_reaches_the_clipped_first_order_coefficients(
    load, C, box, sparse
):
    # Where the penalty dominates the data, the optimum in a box tends to
    # W = clip(C X_c^T (Y - P0), box) (P0 the class shares, X_c centred),
    # written out here: exact to first order, the next order's relative size
    # about C sum|x|^2 (measured 0.4-0.9 of it, 1e-8 to 1e-6 here). The
    # fixed-point steps that finish such coefficients
    # without a box were skipped inside one: L-BFGS-B stopped on rounding
    # with 9e-6 of projected gradient left on raw iris at C = 1e-10 in a box
    # that never binds, warned to use a smaller C, and was 1e-5 off.
    X, y = load(return_X_y=True)
    onehot = np.eye(3)[y]
    expected = np.clip(C * ((X - X.mean(axis=0)).T @ (onehot - onehot.mean(axis=0))).T, *box)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = MultinomialLogitClassifier(C=C, coef_bounds=box)
        model.fit(sp.csr_matrix(X) if sparse else X, y)
    np.testing.assert_allclose(model.coef_, expected, rtol=2 * C * np.sum(X**2), atol=0)
