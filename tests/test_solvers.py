"""The solver layer: the change of variables, stopping rules, hard conditioning."""

import copy
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from _helpers import badly_scaled_classification, written_out_objective
from sklearn.datasets import load_digits, load_iris, load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

import skmultilogit._solvers._driver as driver
import skmultilogit._solvers._preconditioners as preconditioners
from skmultilogit import MultinomialLogitClassifier, loss_gradient
from skmultilogit._backends import NumpyBackend
from skmultilogit._conditioning import ConditionedProblem, feature_scale
from skmultilogit._objective import MultinomialLoss
from skmultilogit._penalties import L1SplitProblem
from skmultilogit._statistics import feature_mean_scale

# Float64 resolution of the gradient where a stop is forced by rounding (sqrt(eps)).
PRECISION_GTOL = 1.4901161193847656e-08


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("sparse", [False, True])
def test_change_of_variables_gradient_and_hessian_match_finite_differences(fit_intercept, sparse):
    rng = np.random.default_rng(0)
    X = rng.normal(loc=3.0, scale=[0.1, 1.0, 20.0, 5.0], size=(40, 4))
    X[rng.random(X.shape) < 0.3] = 0.0
    y = rng.integers(0, 3, size=40)
    X = sp.csr_matrix(X) if sparse else X
    loss = MultinomialLoss.from_arrays(X, y, 3, rng.uniform(0.5, 2, 40), 0.7,
                           fit_intercept=fit_intercept, normalize=True)  # fmt: skip
    mean, spread = feature_mean_scale(loss.data, fit_intercept)
    problem = ConditionedProblem(loss, mean, spread + 0.1)
    theta = rng.normal(size=loss.n_params)
    # the map is invertible
    np.testing.assert_allclose(problem.to_conditioned(problem.to_original(theta)), theta)
    _, grad = problem.loss_gradient(theta)
    step = 1e-6
    numeric = np.array(
        [
            (
                problem.loss_gradient(theta + step * e)[0]
                - problem.loss_gradient(theta - step * e)[0]
            )
            / (2 * step)
            for e in np.eye(loss.n_params)
        ]
    )
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)
    v = rng.normal(size=loss.n_params)
    numeric_hv = (
        problem.loss_gradient(theta + 1e-6 * v)[1] - problem.loss_gradient(theta - 1e-6 * v)[1]
    ) / 2e-6
    np.testing.assert_allclose(problem.hessp(theta, v), numeric_hv, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("sparse", [False, True])
def test_hessian_products_with_inert_features_match_finite_differences(fit_intercept, sparse):
    # An inert feature (a constant column, centred) moves nothing in the data
    # term: its Hessian entries are the penalty's alone, in the gradient by
    # ConditionedProblem._penalty_only and in the products by the backend's
    # change of coordinates (the compiled tables on dense X, _design's numpy
    # steps on sparse X). Products against finite differences of the gradient.
    rng = np.random.default_rng(3)
    X = rng.normal(loc=3.0, scale=[0.5, 2.0, 1.0, 4.0, 1.0], size=(60, 5))
    X[:, [1, 3]] = 2.5 if fit_intercept else 0.0
    y = rng.integers(0, 4, size=60)
    X = sp.csr_matrix(X) if sparse else X
    loss = MultinomialLoss.from_arrays(X, y, 4, rng.uniform(0.5, 2, 60), 0.7,
                                       fit_intercept=fit_intercept, normalize=True)  # fmt: skip
    mean, spread = feature_mean_scale(loss.data, fit_intercept)
    problem = ConditionedProblem(
        loss, mean, feature_scale(spread, loss.penalty.l2_strength), inert=spread == 0
    )
    assert problem.inert is not None and problem.inert.sum() == 2
    theta = rng.normal(size=loss.n_params)
    for v in rng.normal(size=(3, loss.n_params)):
        numeric = (
            problem.loss_gradient(theta + 1e-6 * v)[1] - problem.loss_gradient(theta - 1e-6 * v)[1]
        ) / 2e-6
        np.testing.assert_allclose(problem.hessp(theta, v), numeric, rtol=1e-6, atol=1e-9)
    # without a penalty their entries are zero exactly, not rounding noise
    # (along which Newton's steps would wander without bound)
    free = MultinomialLoss.from_arrays(X, y, 4, rng.uniform(0.5, 2, 60), np.inf,
                                       fit_intercept=fit_intercept, normalize=True)  # fmt: skip
    problem = ConditionedProblem(free, mean, np.where(spread > 0, spread, 1.0), inert=spread == 0)
    product = problem.hessp(theta, rng.normal(size=loss.n_params))
    inert_entries = np.tile(spread == 0, 4)
    assert not product[: inert_entries.size][inert_entries].any()
    assert product[: inert_entries.size][~inert_entries].all()


def test_hessian_products_without_a_penalty_take_features_of_tiny_scale():
    # Without a penalty (C = inf) the products' penalty factor 1 / scale^2 is
    # never formed: at a scale of 1e-300 it would overflow (a warning raised
    # as an error under the tests' warning filters, outside the solvers'
    # own errstate).
    rng = np.random.default_rng(4)
    X = rng.normal(size=(30, 3))
    X[:, 1] *= 1e-300
    y = rng.integers(0, 3, size=30)
    loss = MultinomialLoss.from_arrays(X, y, 3, np.ones(30), np.inf, normalize=True)
    mean, spread = feature_mean_scale(loss.data, True)
    problem = ConditionedProblem(loss, mean, spread)
    theta, v = rng.normal(size=(2, loss.n_params))
    with np.errstate(all="raise"):
        product = problem.hessp(theta, v)
    numeric = (
        problem.loss_gradient(theta + 1e-6 * v)[1] - problem.loss_gradient(theta - 1e-6 * v)[1]
    ) / 2e-6
    np.testing.assert_allclose(product, numeric, rtol=1e-6, atol=1e-9)


def conditioned_gradient_max(clf, X, y, sample_weight=None):
    """Largest entry of the normalised objective's gradient in the solver's
    coordinates (features centred; those of spread outside [0.1, 10] divided by
    sqrt((spread^2 + penalty) / (clipped spread^2 + penalty))), recomputed here
    from the definitions."""
    X = X.astype(np.float64)
    _, y_index = np.unique(y, return_inverse=True)
    s = np.ones(len(y)) if sample_weight is None else sample_weight
    C = clf.C
    _, g_coef, g_intercept = loss_gradient(
        clf.coef_.astype(np.float64), clf.intercept_.astype(np.float64), X, y_index,
        sample_weight=s, C=C,
    )  # fmt: skip
    norm = s.sum() if np.isinf(C) else C * s.sum()
    g_coef, g_intercept = g_coef / norm, g_intercept / norm
    mean = s @ X / s.sum()
    spread = np.sqrt(s @ (X - mean) ** 2 / s.sum())
    penalty = 0.0 if np.isinf(C) else 1.0 / (C * s.sum())
    # features keep their units unless their spread is off 1 by more than 10x
    target = np.minimum(np.maximum(spread, 0.1), 10.0)
    scale = np.sqrt((spread**2 + penalty) / (target**2 + penalty))
    scale[~(scale > 0)] = 1.0
    g_dir = (g_coef - np.outer(g_intercept, mean)) / scale
    return max(np.abs(g_dir).max(), np.abs(g_intercept).max())


def hard_problems():
    X_iris, y_iris = load_iris(return_X_y=True)
    rng = np.random.default_rng(0)
    X_digits, y_digits = load_digits(return_X_y=True)
    yield "iris", X_iris, y_iris, 1.0
    yield "wine_raw", *load_wine(return_X_y=True), 100.0
    yield "digits_raw", X_digits[:500], y_digits[:500], 1.0
    tiny = np.column_stack([X_iris, 1e-10 * rng.normal(size=150)])
    yield "iris_tiny_column", tiny, y_iris, 1.0
    metres = np.column_stack([X_iris, 5e-7 + 1e-7 * rng.normal(size=150)])
    yield "iris_column_in_metres", metres, y_iris, 1.0
    # float32 with a large offset: the objective stops decreasing at float32
    # resolution well above tight tolerances, which must be reported.
    offset = (rng.normal(size=(300, 4)) + 1000.0).astype(np.float32)
    yield "float32_offset", offset, (offset[:, 0] + offset[:, 1] > 2000).astype(int), 1.0


@pytest.mark.parametrize("tol", [1e-4, 1e-8])
@pytest.mark.parametrize("solver", ["lbfgs", "newton-cg", "newton-cholesky"])
@pytest.mark.parametrize("name, X, y, C", list(hard_problems()), ids=lambda v: str(v)[:20])
def test_no_warning_means_the_tolerance_was_met(name, X, y, C, solver, tol):
    clf = MultinomialLogitClassifier(C=C, solver=solver, tol=tol, max_iter=3000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(X, y)
    messages = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
    if name != "float32_offset":
        # float64 problems: every solver meets both tolerances, without a warning
        assert not messages, messages
    elif tol == 1e-8:
        # float32 cannot resolve a gradient of 1e-8 here: that must be said
        assert messages and all("float32 precision" in m for m in messages), messages
    else:
        # 1e-4 is met, except by L-BFGS-B on scipy < 1.15, which stops at float32's floor
        assert all("float32 precision" in m for m in messages), messages
    if not messages:
        assert conditioned_gradient_max(clf, X, y) <= max(tol, PRECISION_GTOL) * (1 + 1e-6)


def test_newton_cg_goes_on_where_the_objective_can_no_longer_tell():
    # Found by hypothesis (the thorough profile): trust-ncg stopped at a
    # gradient of 1.8e-8, where decreases of the objective are below its
    # rounding; closely solved Newton steps that shrink the gradient finish.
    X = np.array([[0.0], [1.0], [1.0], [1.0], [1.0], [1.0], [1.0]])
    y = np.array([0, 1, 1, 2, 2, 0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = MultinomialLogitClassifier(C=0.1, solver="newton-cg", tol=1e-10).fit(X, y)
    assert conditioned_gradient_max(clf, X, y) <= 1e-10


@pytest.mark.parametrize("solver", ["lbfgs", "newton-cg", "newton-cholesky"])
@pytest.mark.parametrize("column", ["tiny", "metres"])
def test_columns_of_tiny_spread_do_not_break_the_fit(solver, column):
    # A feature measured in metres (5e-7 +- 1e-7) or pure 1e-10 noise: the
    # penalty, not the spread, sets its curvature.
    X, y = load_iris(return_X_y=True)
    rng = np.random.default_rng(0)
    extra = 1e-10 * rng.normal(size=150) if column == "tiny" else 5e-7 + 1e-7 * rng.normal(size=150)
    X = np.column_stack([X, extra])
    lr = LogisticRegression(solver="newton-cholesky", tol=1e-12, max_iter=1000).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = MultinomialLogitClassifier(solver=solver, tol=1e-8, max_iter=1000).fit(X, y)
    f = loss_gradient(clf.coef_, clf.intercept_, X, y)[0]
    f_lr = loss_gradient(lr.coef_, lr.intercept_, X, y)[0]
    assert (f - f_lr) / f_lr < 1e-9


@pytest.mark.parametrize("factor", [1e-100, 1e-150])
@pytest.mark.parametrize("solver", ["lbfgs", "newton-cg", "newton-cholesky"])
def test_tiny_features_give_the_class_prior_model(factor, solver):
    # With C = 1 the penalty outweighs any effect of features of size 1e-100:
    # the optimum is the intercepts-only model, probabilities = class shares.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 3))
    y = (X[:, 0] + X[:, 1] + rng.normal(scale=0.5, size=100) > 0).astype(int) + (X[:, 2] > 1)
    clf = MultinomialLogitClassifier(solver=solver).fit(X * factor, y)
    shares = np.bincount(y) / len(y)
    np.testing.assert_allclose(clf.predict_proba(X * factor), np.tile(shares, (100, 1)), rtol=1e-6)
    np.testing.assert_allclose(clf.intercept_, np.log(shares) - np.log(shares).mean(), atol=1e-6)
    assert np.all(np.abs(clf.coef_) * factor < 1e-12)


def test_huge_C_is_nearly_no_penalty_not_a_zero_model():
    X, y = load_iris(return_X_y=True)
    X = X[50:]  # versicolor vs virginica: not separable, so C=inf has an optimum
    y = y[50:]
    huge = MultinomialLogitClassifier(C=1e308, solver="newton-cg", tol=1e-10).fit(X, y)
    free = MultinomialLogitClassifier(C=np.inf, solver="newton-cg", tol=1e-10).fit(X, y)
    np.testing.assert_allclose(huge.coef_, free.coef_, rtol=1e-6)


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("fmt", ["dense", "csr", "csc"])
def test_feature_statistics_match_their_definition(fit_intercept, fmt, monkeypatch):
    rng = np.random.default_rng(0)
    X = rng.normal(loc=2.0, size=(50, 7))
    X[rng.random(X.shape) < 0.6] = 0.0
    X[3] = 0.0  # an empty row
    X[:, 2] = 0.0  # an empty column
    weight = rng.uniform(0.1, 2.0, size=50)
    mean = weight @ X / weight.sum() if fit_intercept else np.zeros(7)
    spread = np.sqrt(weight @ (X - mean) ** 2 / weight.sum())
    data = X if fmt == "dense" else sp.csr_matrix(X).asformat(fmt)
    # small blocks and chunks so that their boundaries are crossed
    monkeypatch.setattr("skmultilogit._backends._numpy.STATS_BLOCK_ROWS", 8)
    monkeypatch.setattr("skmultilogit._statistics.ENTRY_CHUNK", 7)
    backend = NumpyBackend(data, np.zeros(50), 2, weight)
    got_mean, got_spread = feature_mean_scale(backend, fit_intercept)
    np.testing.assert_allclose(got_mean, mean, atol=1e-12)
    np.testing.assert_allclose(got_spread, spread, atol=1e-12)


@pytest.mark.parametrize("fmt", ["dense", "csr", "csc"])
def test_the_spread_of_a_column_far_from_zero_does_not_cancel(fmt, monkeypatch):
    # Columns 1e6 + 0.01 z and -3e7 + z (stored in every row), one with a
    # few zeros among values near 5e5, and rows of zero weight without
    # entries or with huge ones: the spread against numpy's two-pass
    # definition over the rows of positive weight. Sparse blocks once took
    # it from the raw moments E[x^2] - E[x]^2, which cancel here: the first
    # two came out 0 (the coefficient held at 0, as a constant column's) or
    # 2-38 times too large. And a 1e200 in a row of zero weight once set the
    # column's units, in which the others' squares underflowed: spread 0;
    # in a column of 1e-290s it overflowed in their units (a warning, NaN).
    rng = np.random.default_rng(1)
    z = rng.normal(size=(60, 4))
    X = np.column_stack([1e6 + 0.01 * z[:, 0], -3e7 + z[:, 1], 5e5 + z[:, 2], 1e-290 * z[:, 3]])
    X[[4, 9, 17], 2] = 0.0
    weight = rng.uniform(0.1, 2.0, size=60)
    weight[[0, 1, 2]] = 0.0
    X[[0, 1]] = 0.0  # rows of zero weight, nothing stored in them
    X[2] = [1e200, -1e300, 7.0, 1e300]  # and one of no account either
    counted = weight > 0
    units = np.array([1.0, 1.0, 1.0, 1e-290])  # numpy's squares of 1e-290 underflow
    mean = weight[counted] @ (X[counted] / units) / weight.sum()
    spread = np.sqrt(weight[counted] @ (X[counted] / units - mean) ** 2 / weight.sum())
    mean, spread = mean * units, spread * units
    data = X if fmt == "dense" else sp.csr_matrix(X).asformat(fmt)
    monkeypatch.setattr("skmultilogit._backends._numpy.STATS_BLOCK_ROWS", 16)
    monkeypatch.setattr("skmultilogit._statistics.ENTRY_CHUNK", 7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got_mean, got_spread = feature_mean_scale(NumpyBackend(data, np.zeros(60), 2, weight), True)
    np.testing.assert_allclose(got_mean, mean, rtol=1e-14)
    np.testing.assert_allclose(got_spread, spread, rtol=1e-7)


def test_a_runaway_inner_solve_is_reported_not_hidden(monkeypatch):
    original = driver.Tracer.__init__

    def tiny_budget(self, problem, verbose, on_iterate=None):
        original(self, problem, verbose, on_iterate)
        self.max_products = 1  # any real CG solve needs more

    monkeypatch.setattr(driver.Tracer, "__init__", tiny_budget)
    X, y = load_iris(return_X_y=True)
    with pytest.warns(ConvergenceWarning, match="conjugate-gradient solve did not terminate"):
        clf = MultinomialLogitClassifier(solver="newton-cg").fit(X, y)
    # the model is the start (all zeros) or an accepted iterate: never worse than it
    start = loss_gradient(np.zeros((3, 4)), np.zeros(3), X, y)[0]
    assert loss_gradient(clf.coef_, clf.intercept_, X, y)[0] <= start


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_runaway_inner_solve_on_float32_data_names_float32_too(monkeypatch, dtype):
    # newton-cg's CG asks for a residual of |g|^1.5; near the optimum float32
    # products may not resolve that and CG runs away without the problem
    # being degenerate (5 float32 rows, K = 4, tol=1e-10 did with scipy 1.17),
    # so on float32 X the warning names both causes and both remedies; on
    # float64 a runaway is a degenerate problem. The runaway is forced here
    # (one product per solve), as in the test above.
    original = driver.Tracer.__init__

    def tiny_budget(self, problem, verbose, on_iterate=None):
        original(self, problem, verbose, on_iterate)
        self.max_products = 1

    monkeypatch.setattr(driver.Tracer, "__init__", tiny_budget)
    X, y = load_iris(return_X_y=True)
    with pytest.warns(ConvergenceWarning, match="did not terminate") as caught:
        MultinomialLogitClassifier(solver="newton-cg").fit(X.astype(dtype), y)
    (message,) = [str(w.message) for w in caught if w.category is ConvergenceWarning]
    assert "numerically degenerate" in message
    float32_named = "float32 products cannot resolve it" in message and "fit float64" in message
    assert float32_named == (dtype == np.float32)


def lr_optimum_objective(X, y, C):
    """The objective F / (C n) at LogisticRegression's exact-Newton optimum."""
    lr = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-12, max_iter=1000).fit(X, y)
    _, y_index = np.unique(y, return_inverse=True)
    f, _, _ = loss_gradient(lr.coef_, lr.intercept_, X, y_index, C=C)
    return f / (C * len(y))


def assert_at_the_optimum(ours, X, y, C):
    """``ours`` within 1e-9 of LogisticRegression's newton-cholesky optimum (tol=1e-12)."""
    reference = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-12, max_iter=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference.fit(X, y)
    best = written_out_objective(X, y, C, reference.coef_, reference.intercept_)
    assert written_out_objective(X, y, C, ours.coef_, ours.intercept_) - best <= 1e-9 * best


def objective(clf, X, y):
    _, y_index = np.unique(y, return_inverse=True)
    f, _, _ = loss_gradient(clf.coef_, clf.intercept_, X, y_index, C=clf.C)
    return f / (clf.C * len(y))


def test_sampled_preconditioner_reaches_the_optimum(monkeypatch):
    # A budget of 0.2 rows per parameter forces the curvature-drawn sample on
    # the digits (without it they get the exact Hessian).
    monkeypatch.setattr(preconditioners, "HESSIAN_COST_IN_GRADIENTS", 1)
    monkeypatch.setattr(preconditioners, "MIN_HESSIAN_ROWS_PER_PARAM", 0.2)
    sampled = []
    original = preconditioners.hessian_rows

    def spy(*args):
        rows, factor = original(*args)
        sampled.append(rows is not None and len(rows) < 1797)
        return rows, factor

    monkeypatch.setattr(preconditioners, "hessian_rows", spy)
    X, y = load_digits(return_X_y=True)
    clf = MultinomialLogitClassifier(solver="newton-cholesky", tol=1e-8).fit(X, y)
    assert sampled and all(sampled)
    best = lr_optimum_objective(X, y, 1.0)
    assert (objective(clf, X, y) - best) / best < 1e-9


def test_sampling_keeps_rows_of_large_curvature_and_is_unbiased():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, 3))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 1)
    loss = MultinomialLoss.from_arrays(X, y, 3, np.ones(4000), 1.0, normalize=True)
    coef, intercept = np.array([[-6.0, 0, 0], [6.0, -6.0, 0], [0, 6.0, 0]]), np.zeros(3)
    curvature = loss.data.curvature(coef, intercept)
    budget = 300
    rows, factor = preconditioners.hessian_rows(curvature, budget, np.random.default_rng(1))
    # every row whose share of the total curvature exceeds 1/budget is kept, unscaled
    heavy = np.flatnonzero(budget * curvature / curvature.sum() >= 1)
    assert np.isin(heavy, rows).all()
    np.testing.assert_array_equal(factor[np.isin(rows, heavy)], 1.0)
    # Horvitz-Thompson: the weighted sample estimates the total curvature
    estimates = []
    for seed in range(200):
        rows, factor = preconditioners.hessian_rows(curvature, budget, np.random.default_rng(seed))
        estimates.append(curvature[rows] @ factor)
    assert abs(np.mean(estimates) / curvature.sum() - 1) < 0.01


def test_auto_picks_newton_for_an_affordable_hessian_and_lbfgs_otherwise():
    from skmultilogit._solvers import resolve_solver

    rng = np.random.default_rng(0)
    small = MultinomialLoss.from_arrays(
        rng.normal(size=(1797, 64)), np.arange(1797) % 10, 10, np.ones(1797)
    )
    assert resolve_solver("auto", small) == "newton-cholesky"
    # 20 classes x 5001 parameters each: a 120 GB Hessian
    wide = sp.random(2000, 5000, density=0.005, format="csr", random_state=0)
    assert resolve_solver(
        "auto", MultinomialLoss.from_arrays(wide, np.arange(2000) % 20, 20, np.ones(2000))
    ) == ("lbfgs")
    # 50 classes x 41: 50 MB, affordable
    tall = MultinomialLoss.from_arrays(
        np.zeros((30000, 40)), np.arange(30000) % 50, 50, np.ones(30000)
    )
    assert resolve_solver("auto", tall) == "newton-cholesky"
    # 40 classes x 61 parameters each: 72 MB
    wider = MultinomialLoss.from_arrays(np.zeros((100, 60)), np.arange(100) % 40, 40, np.ones(100))
    assert resolve_solver("auto", wider) == "lbfgs"
    assert resolve_solver("newton-cg", tall) == "newton-cg"


def test_newton_cholesky_stops_at_the_noise_floor_of_float32_data():
    # float32 products put a floor (here about 5e-9) under the gradient and
    # make the objective noisy; asking for less must end in a few steps, not
    # run to max_iter on noise. Below sqrt(eps) the stop counts as converged.
    X, y = load_digits(return_X_y=True)
    X32 = (X / 16).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = MultinomialLogitClassifier(solver="newton-cholesky", tol=1e-14, max_iter=1000)
        clf.fit(X32, y)
    assert clf.n_iter_[0] < 30
    assert conditioned_gradient_max(clf, X32, y) <= PRECISION_GTOL


def test_feature_scale_leaves_comparable_units_and_pulls_outliers_into_the_band():
    penalty = 1e-4
    spread = np.array([0.2, 1.0, 7.0, 1000.0, 1e-3, 1e-10, 0.0])
    scale = feature_scale(spread, penalty)
    np.testing.assert_array_equal(scale[:3], 1.0)  # within [0.1, 10]: units kept
    # outliers end up with spread 10 or 0.1 in the solver's coordinates
    # (up to the penalty floor, which matters only near sqrt(penalty) = 0.01)
    assert abs(spread[3] / scale[3] - 10.0) < 1e-5
    assert abs(np.hypot(spread[4], 0.01) / scale[4] - np.hypot(0.1, 0.01)) < 1e-12
    # a column of 1e-10 noise is scaled by the penalty, not blown up to 0.1
    assert spread[5] / scale[5] < 1e-8 and scale[5] > 0.09
    assert np.all(np.isfinite(scale)) and np.all(scale > 0)
    # without a penalty a constant column keeps its units
    assert feature_scale(np.array([0.0]), 0.0)[0] == 1.0


def test_l1_split_gradient_matches_finite_differences_and_polish_finds_zeros():
    from skmultilogit._solvers import minimize_loss

    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 5)) * [1.0, 30.0, 0.02, 1.0, 1.0]
    y = rng.integers(0, 3, size=60)
    loss = MultinomialLoss.from_arrays(X, y, 3, np.ones(60), 0.2, normalize=True, l1_ratio=0.8)
    mean, spread = feature_mean_scale(loss.data, True)
    problem = L1SplitProblem(ConditionedProblem(loss, mean, spread + 0.5), loss.penalty.l1_strength)
    x = np.abs(rng.normal(size=2 * 15 + 3))
    x[30:] -= 0.5  # intercepts are free
    _, grad = problem.loss_gradient(x)
    step = 1e-6
    numeric = [
        (problem.loss_gradient(x + step * e)[0] - problem.loss_gradient(x - step * e)[0])
        / (2 * step)
        for e in np.eye(x.size)
    ]
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)

    # At the optimum, lift one exactly-zero coefficient a hair off its bound:
    # the projected gradient then only sees the hair, polish puts it back.
    result = minimize_loss(loss, np.zeros(loss.n_params), solver="lbfgs", tol=1e-10,
                           max_iter=1000)  # fmt: skip
    coef = loss.unpack(result.w)[0]
    assert (coef == 0).any()
    problem = L1SplitProblem(ConditionedProblem(loss, mean, np.ones(5)), loss.penalty.l1_strength)
    x = problem.to_conditioned(result.w)
    zero = int(np.flatnonzero(x[:15] == 0)[0])
    x[zero] = 1e-9
    f, grad = problem.loss_gradient(x)
    assert grad[zero] > 1e-6 and abs(problem.stationarity(x, grad)[zero]) <= 1e-9
    polished = problem.polish(x, f, grad)
    assert polished[zero] == 0.0 and problem.loss_gradient(polished)[0] < f


def problems_of_two_feature_scales(fit_intercept=True):
    """One data set in the coordinates of C = 1e-4 and of C = 10 (feature scales differ)."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(300, 4)) * [0.001, 1.0, 50.0, 3.0]
    y = rng.integers(0, 3, size=300)
    mean, spread = feature_mean_scale(NumpyBackend(X, y, 3, np.ones(300)), fit_intercept)

    def problem_at(C):
        loss = MultinomialLoss.from_arrays(
            X, y, 3, np.ones(300), C, fit_intercept=fit_intercept, normalize=True
        )
        return ConditionedProblem(loss, mean, feature_scale(spread, loss.penalty.l2_strength))

    first, second = problem_at(1e-4), problem_at(10.0)
    assert not np.allclose(first.scale, second.scale)
    return first, second, rng


def test_a_reused_hessian_follows_changed_feature_scales():
    # Along a path the penalty changes the feature scales; the data Hessian
    # of the previous fit, carried over, must equal a fresh one in the new
    # coordinates (to float32 accumulation).
    from skmultilogit._solvers._preconditioners import Preconditioner

    first, second, rng = problems_of_two_feature_scales()
    w = rng.normal(size=15) * 0.1
    old = Preconditioner(first, first.to_conditioned(w), np.inf, None, 1 / 3, keep=True)
    fresh = Preconditioner(second, second.to_conditioned(w), np.inf, None, 1 / 3, keep=True)
    carried = old.for_problem(second, 1 / 3)
    assert old.data_hessian is None and old.factor is None  # handed over, not copied
    upper = np.triu(np.ones((15, 15), dtype=bool))
    size = np.abs(fresh.data_hessian[upper]).max()
    np.testing.assert_allclose(
        carried.data_hessian[upper], fresh.data_hessian[upper], rtol=0, atol=1e-5 * size
    )
    # and both factorise the same matrix, penalty included
    rebuilt = [np.triu(p.factor).T @ np.triu(p.factor) for p in (carried, fresh)]
    np.testing.assert_allclose(rebuilt[0], rebuilt[1], rtol=0, atol=1e-5 * size)


@pytest.mark.parametrize("uniform", [True, False])
@pytest.mark.parametrize("n_classes", [2, 6])
def test_kronecker_factor_solves_with_the_written_out_matrix(uniform, n_classes):
    # A (x) G + I (x) diag(a) + s 1 1^T (x) e e^T, written out with np.kron;
    # uniform probabilities give A a repeated eigenvalue
    from skmultilogit._cholesky import KroneckerFactor

    rng = np.random.default_rng(n_classes)
    proba = np.full(n_classes, 1 / n_classes) if uniform else rng.dirichlet(np.ones(n_classes))
    class_factor = np.diag(proba) - np.outer(proba, proba)
    design = rng.normal(size=(50, 4))
    gram = design.T @ design
    diagonal = np.array([0.3, 0.1, 2.0, 0.0])  # nothing on the intercept
    dense = np.kron(class_factor, gram) + np.diag(np.tile(diagonal, n_classes))
    last = np.arange(n_classes) * 4 + 3
    dense[np.ix_(last, last)] += 0.4
    rows = rng.normal(size=(n_classes, 4))
    solved = KroneckerFactor(class_factor, gram, diagonal, 0.4).solve(rows)
    expected = np.linalg.solve(dense, rows.ravel()).reshape(n_classes, 4)
    np.testing.assert_allclose(solved, expected, rtol=1e-9, atol=1e-12 * np.abs(expected).max())


def test_kronecker_factor_refuses_a_pivot_at_the_level_of_rounding():
    # C = 1e300: a penalty of 1e-303 on a direction of no data curvature is
    # positive but no curvature; its inverse would send a step to 1e300 (a
    # fit then stopped after 0 iterations). Collinear columns give every
    # block such a direction: refused, for the caller's ridge.
    from skmultilogit._cholesky import KroneckerFactor

    proba = np.array([0.2, 0.3, 0.5])
    class_factor = np.diag(proba) - np.outer(proba, proba)
    design = np.random.default_rng(0).normal(size=(30, 4))
    design[:, 3] = design[:, 2]
    with pytest.raises(np.linalg.LinAlgError):
        KroneckerFactor(class_factor, design.T @ design, np.full(4, 1e-303), 0.0)
    KroneckerFactor(class_factor, design.T @ design, np.full(4, 1e-10), 0.0)


def test_kronecker_factor_floors_the_common_shift_at_sqrt_eps():
    # Along the classes' common shift only the penalty curves the objective;
    # below sqrt(eps) of the diagonal (C = inf, or C of 1e8 and more) the
    # solve would divide the residual's rounding by it (a polish step then
    # failed at C = inf and the fit ended 2.6e-6 from the optimum)
    from skmultilogit._cholesky import KroneckerFactor

    proba = np.array([0.2, 0.3, 0.5])
    class_factor = np.diag(proba) - np.outer(proba, proba)
    design = np.random.default_rng(0).normal(size=(30, 4))
    gram = design.T @ design
    factor = KroneckerFactor(class_factor, gram, np.full(4, 1e-14), 0.0)
    size = np.max(np.outer(np.linalg.eigvalsh(class_factor), np.diag(gram)))
    shift = np.outer(np.ones(3) / np.sqrt(3), np.eye(4)[1])  # one feature, every class
    expected = shift / (KroneckerFactor.NULL_FLOOR * size)
    np.testing.assert_allclose(
        factor.solve(shift), expected, rtol=1e-9, atol=1e-9 * np.abs(expected).max()
    )
    # and in all, the inverse of the written-out matrix with that floor
    rows = np.random.default_rng(1).normal(size=(3, 4))
    ones = np.full((3, 3), 1 / 3)
    dense = np.kron(class_factor, gram) + 1e-14 * np.eye(12)
    dense += np.kron(ones, (KroneckerFactor.NULL_FLOOR * size - 1e-14) * np.eye(4))
    # (condition 7e7: either solve's rounding is about 1e-8)
    np.testing.assert_allclose(
        factor.solve(rows).ravel(), np.linalg.solve(dense, rows.ravel()), rtol=1e-7
    )


@pytest.mark.parametrize("C", [0.5, np.inf])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_the_preconditioner_at_zero_solves_with_the_hessian_from_its_products(C, fit_intercept):
    # The Kronecker form at zero coefficients against the matrix of exact
    # Hessian-vector products (penalty included), plus what the dense
    # preconditioner adds: the intercepts' shift and, without a penalty, 1
    # on the inert coefficients (a constant column here).
    rng = np.random.default_rng(5)
    X = rng.normal(loc=2.0, scale=[0.5, 3.0, 1.0, 1.0], size=(120, 4))
    X[:, 2] = 7.0 if fit_intercept else 0.0
    y = rng.integers(0, 4, size=120)
    loss = MultinomialLoss.from_arrays(X, y, 4, rng.uniform(0.5, 2, 120), C,
                                       fit_intercept=fit_intercept, normalize=True)  # fmt: skip
    mean, spread = feature_mean_scale(loss.data, fit_intercept)
    problem = ConditionedProblem(
        loss, mean, feature_scale(spread, loss.penalty.l2_strength), inert=spread == 0
    )
    assert problem.inert is not None
    theta = np.zeros(loss.n_params)
    if fit_intercept:
        theta[-4:] = rng.normal(size=4)
    null_weight = 0.25 if fit_intercept else 0.0
    pre = preconditioners.KroneckerPreconditioner.at(problem, theta, null_weight)
    assert pre is not None
    dense = np.column_stack([problem.hessp(theta, e) for e in np.eye(loss.n_params)])
    if fit_intercept:
        dense[16:, 16:] += null_weight
    if C == np.inf:
        inert = np.tile(problem.inert, 4)
        dense[np.flatnonzero(inert), np.flatnonzero(inert)] += 1.0
    residual = rng.normal(size=loss.n_params)
    if C == np.inf:
        # singular along the classes' common shift of the coefficients: a
        # ridge then, and a residual across that null space (as a gradient is)
        eigenvalues, eigenvectors = np.linalg.eigh(dense)
        null = eigenvectors[:, eigenvalues < 1e-10 * eigenvalues.max()]
        assert null.shape[1] == 3  # the three free features
        residual -= null @ (null.T @ residual)
        expected = np.linalg.pinv(dense, hermitian=True) @ residual
        # (the rounding of the residual along the null space, divided by the
        # ridge, is all the solve adds there)
        solved = pre.solve(residual)
        solved -= null @ (null.T @ solved)
        # the ridge (1e-10 of the diagonal's size) against the smallest
        # curvature moves the rest by 8e-8 relative here
        np.testing.assert_allclose(solved, expected, rtol=1e-6, atol=1e-10)
    else:
        expected = np.linalg.solve(dense, residual)
        np.testing.assert_allclose(pre.solve(residual), expected, rtol=1e-8, atol=1e-10)
    # elsewhere: the dense form
    theta[0] = 0.1
    assert preconditioners.KroneckerPreconditioner.at(problem, theta, null_weight) is None


def test_a_fit_from_zero_forms_no_dense_hessian_at_zero(monkeypatch):
    # the start's preconditioner comes from the Gram matrix alone
    at_zero = []
    original = NumpyBackend.hessian

    def spy(self, coef, *args, **kwargs):
        at_zero.append(not np.any(coef))
        return original(self, coef, *args, **kwargs)

    monkeypatch.setattr(NumpyBackend, "hessian", spy)
    X, y = load_wine(return_X_y=True)
    MultinomialLogitClassifier(solver="newton-cholesky").fit(X, y)
    assert at_zero and not any(at_zero)


def test_a_carried_kronecker_preconditioner_follows_changed_feature_scales():
    # as test_a_reused_hessian_follows_changed_feature_scales, at zero
    for fit_intercept in (True, False):
        first, second, rng = problems_of_two_feature_scales(fit_intercept)
        null_weight = 1 / 3 if fit_intercept else 0.0
        theta = np.zeros(first.loss.n_params)
        if fit_intercept:
            theta[-3:] = [0.3, -0.2, 0.1]
        old = preconditioners.KroneckerPreconditioner.at(first, theta, null_weight)
        carried = old.for_problem(second, null_weight)
        assert old.gram is None and old.factor is None  # handed over, not copied
        assert old.for_problem(second, null_weight) is None
        fresh = preconditioners.KroneckerPreconditioner.at(second, theta, null_weight)
        residual = rng.normal(size=theta.size)
        np.testing.assert_allclose(carried.solve(residual), fresh.solve(residual), rtol=1e-10)
    # another centre: not carried
    shifted = copy.copy(second)
    shifted.mean = second.mean + 1.0
    assert fresh.for_problem(shifted, null_weight) is None


def test_a_path_holds_one_hessian_at_a_time():
    from skmultilogit._path import coefficient_path

    X, y = load_wine(return_X_y=True)
    _, y_index = np.unique(y, return_inverse=True)
    _, _, results = coefficient_path(
        NumpyBackend(X, y_index, 3, np.ones(len(y))), [0.01, 0.1, 1.0], solver="newton-cholesky"
    )
    assert all(result.preconditioner is None for result in results)


@pytest.mark.parametrize("solver", ["newton-cholesky", "lbfgs", "newton-cg"])
def test_n_iter_never_exceeds_max_iter(solver):
    # The steps past tol (newton-cholesky's polish, the finishing steps after
    # L-BFGS-B or trust-ncg) count as iterations and stop at max_iter: the
    # polish used to add its two steps to a fit that had used max_iter up.
    X, y = load_digits(return_X_y=True)
    X = (X - X.mean(axis=0)) / np.maximum(X.std(axis=0), 1e-12)
    unlimited = MultinomialLogitClassifier(solver=solver, tol=1e-6, max_iter=1000).fit(X, y)
    n = int(unlimited.n_iter_[0])
    for max_iter in range(max(1, n - 4), n + 1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf = MultinomialLogitClassifier(solver=solver, tol=1e-6, max_iter=max_iter).fit(X, y)
        assert clf.n_iter_[0] <= max_iter, (max_iter, clf.n_iter_)


@pytest.mark.parametrize(
    "C, max_n_iter",
    [(100.0, 100), (1e4, 100), (1e6, 60)],
    ids=["C=100", "C=1e4", "C=1e6"],
)
def test_a_weakly_penalised_small_fit_ends_at_the_optimum(C, max_n_iter):
    # What the polish promises small problems. The default tol leaves these
    # fits far above the optimum (raw digits: 1e-4 of it at C = 100, 0.55 at
    # C = 1e4, 5x at C = 1e6) while the polish's closely solved steps were
    # refused there. At C = 1e6 float32 factors of the Hessian cannot resolve
    # it: every damped step rebuilt one and stayed inexact, and the fit ran
    # to max_iter=100 (40 iterations with float64 factors). The reference:
    # LogisticRegression's newton-cholesky to tol=1e-12.
    X, y = load_digits(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        ours = MultinomialLogitClassifier(C=C).fit(X, y)
    assert_at_the_optimum(ours, X, y, C)
    assert ours.n_iter_[0] < max_n_iter


@pytest.mark.parametrize("form", ["raw", "standardised", "binarised"])
def test_a_looser_tol_takes_no_more_iterations_where_the_fit_goes_on_to_the_optimum(form):
    # Small problems go on past tol to the optimum, so tol only decides where
    # Newton steps hand over to the polish. Handed over at tol=1e-2, two steps
    # from the start, the polish's first closely solved step was refused and a
    # half step, a new factor and the damped steps followed: 13 iterations on
    # the standardised digits and 9 on the binarised ones, against 8 and 7 at
    # the default tol (one thread: 60 against 37 ms).
    X, y = load_digits(return_X_y=True)
    if form == "standardised":
        X = (X - X.mean(axis=0)) / np.maximum(X.std(axis=0), 1e-12)
    elif form == "binarised":
        X = (X > 7).astype(float)
    n_iter = {}
    for tol in [1e-1, 1e-2, 1e-4]:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            clf = MultinomialLogitClassifier(tol=tol).fit(X, y)
        assert_at_the_optimum(clf, X, y, 1.0)
        n_iter[tol] = clf.n_iter_[0]
    assert max(n_iter[1e-1], n_iter[1e-2]) <= n_iter[1e-4], n_iter


def _nearly_separable_60_rows():
    # the third of three such draws from one generator (a search for fits
    # that ended above the optimum found it)
    rng = np.random.default_rng(0)
    for n in (20, 40, 60):
        rng.normal(size=(n, 5))
        rng.integers(0, 3, n)
        X = rng.normal(size=(n, 4))
        W = rng.normal(size=(4, 3)) * 3
        y = np.argmax(X @ W + rng.normal(size=(n, 3)) * 0.3, axis=1)
        rng.uniform(-4, 4, 4)
    return X, y


@pytest.mark.parametrize(
    "data, C, tol",
    [(lambda: load_wine(return_X_y=True), 1e4, 1e-3), (_nearly_separable_60_rows, 1e8, 1e-6)],
    ids=["wine-C=1e4", "separable-60-C=1e8"],
)
def test_steps_past_tol_end_within_the_optimum_gap(data, C, tol):
    # The polish ends after two kept full steps only once the decrement says
    # f is within OPTIMUM_GAP (1e-10) of its minimum. Counting kept steps
    # taken while it was further (weak curvature: the steps shrink the
    # gradient tenfold but converge linearly) ended these fits 5.3e-10 and
    # 6.6e-10 above it. The reference: LogisticRegression's newton-cholesky
    # to tol=1e-12.
    X, y = data()
    reference = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-12, max_iter=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference.fit(X, y)
        best = written_out_objective(X, y, C, reference.coef_, reference.intercept_)
        warnings.simplefilter("error", ConvergenceWarning)
        ours = MultinomialLogitClassifier(C=C, tol=tol).fit(X, y)
    assert written_out_objective(X, y, C, ours.coef_, ours.intercept_) - best <= 1e-10 * best


def test_steps_past_tol_never_end_a_fit_above_it():
    # 20 rows, 30 features scaled by e^-4..e^4 and shifted, C = 1e4: tol=1e-3
    # is met at the 8th iteration, far from the optimum; the damped Newton
    # steps towards it leave the gradient above tol at the 9th and 10th. A
    # max_iter that ends the fit there must not turn a fit that met tol into
    # a warning: it ends at the last iterate that met tol, and more
    # iterations never end higher.
    X, y = badly_scaled_classification(
        114, 4, 10, n_samples=20, n_features=30, class_sep=0.5, flip_y=0.1
    )
    C = 1e4
    objectives = []
    for max_iter in range(8, 20):
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            clf = MultinomialLogitClassifier(C=C, tol=1e-3, max_iter=max_iter).fit(X, y)
        objectives.append(written_out_objective(X, y, C, clf.coef_, clf.intercept_))
    assert np.all(np.diff(objectives) <= 1e-12 * objectives[0]), objectives
    # and the steps past tol were worth taking: 0.5 of the first one's value
    assert objectives[-1] < 0.5 * objectives[0]


@pytest.mark.parametrize("seed", [0, 13, 22])
def test_steps_past_tol_stop_where_the_objective_cannot_tell_progress(seed):
    # Separable rows at C = 1e8: f is tiny, and once the optimum is reached
    # the Newton decrement's rounding stays above 1e-10 of f. Without the
    # stop on a step within f's rounding these fits took every one of
    # max_iter=300 iterations (39, 30 and 34 now).
    X, y = badly_scaled_classification(
        seed, 4, 10, n_samples=34, n_features=9, n_informative=1, class_sep=1.7, flip_y=0.0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = MultinomialLogitClassifier(C=1e8, tol=1e-5, max_iter=300).fit(X, y)
    assert clf.n_iter_[0] < 60


def test_float32_fits_keep_float32_factors(monkeypatch):
    # With float32 X, CG on a fresh factor fails because the float32 Hessian
    # products are noisy, not because the factor is coarse: float64 factors
    # solved no better, every step rebuilt one (10 per fit on the float32
    # digits at C = 1e4), and near-separable fits drifted into a
    # ConvergenceWarning (136 of 300 random ones warned, 73 without them).
    from skmultilogit._solvers import _preconditioners

    dtypes = []
    original = _preconditioners.Preconditioner.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        dtypes.append(self.dtype)

    monkeypatch.setattr(_preconditioners.Preconditioner, "__init__", spy)
    X, y = load_digits(return_X_y=True)
    MultinomialLogitClassifier(C=1e4).fit(X.astype(np.float32), y)
    assert dtypes and set(dtypes) == {np.dtype(np.float32)}, dtypes
    # the same fit on float64 X does widen: the spy sees it
    dtypes.clear()
    MultinomialLogitClassifier(C=1e4).fit(X, y)
    assert np.dtype(np.float64) in dtypes


def _solver_after(X, y, max_iter, **params):
    """The newton-cholesky solver of a fit of ``max_iter`` iterations, as it ended."""
    from skmultilogit._solvers._newton_cholesky import NewtonCholesky

    captured = {}
    solve = NewtonCholesky.solve

    def capture(self, theta0):
        captured["solver"] = self
        return solve(self, theta0)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(NewtonCholesky, "solve", capture)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            MultinomialLogitClassifier(solver="newton-cholesky", max_iter=max_iter, **params).fit(
                X, y
            )
    return captured["solver"]


@pytest.mark.parametrize("data", ["random", "digits"])
def test_a_rebuilt_factor_on_a_path_does_not_hold_the_old_one(monkeypatch, data):
    # The solver dropped its own reference to the old preconditioner before
    # building the next, but the tracer (which hands it to the next fit of a
    # path) still held it: with the Hessian kept for the path, a rebuild
    # peaked at twice what one build holds. On the digits, near the optimum,
    # the rebuild leaves terms out (_omission.add_class_pairs_omitting), whose
    # temporaries must stay within the same bound.
    import tracemalloc

    from skmultilogit import _hessian

    if data == "random":
        rng = np.random.default_rng(0)
        X = rng.standard_normal((2000, 79))
        y = rng.integers(0, 6, 2000)
        max_iter, shift = 2, 0.01  # off zero: the dense Hessian, not the Kronecker one
    else:
        X, y = load_digits(return_X_y=True)
        max_iter, shift = 8, 0.0
    solver = _solver_after(X, y, max_iter)
    solver.keep_hessian = True
    solver.theta = solver.theta + shift
    solver.preconditioner = solver.tracer.preconditioner = None
    kept = []
    omitting = _hessian.add_class_pairs_omitting
    monkeypatch.setattr(
        _hessian,
        "add_class_pairs_omitting",
        lambda *args: kept.append(omitting(*args)) or kept[-1],
    )
    tracemalloc.start()
    try:
        solver.update_preconditioner()
        held = tracemalloc.get_traced_memory()[0]  # a kept Hessian and its factor
        tracemalloc.reset_peak()
        solver.update_preconditioner()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 1.5 * held, (peak, held)
    if data == "digits":
        assert kept and None not in kept  # every block left terms out


@pytest.mark.parametrize("data", ["random", "digits"])
def test_a_rebuilt_factor_is_built_in_the_last_ones_memory(data):
    # A rebuild formed the Hessian in new memory and factored a copy of it
    # (in a fresh process, where glibc gives freed matrices back, 2310 page
    # faults a fit on the raw digits). Now the Hessian is built in the spent
    # factor's memory (the stacked sums first, on the random data) and
    # factored there: the rebuild allocates less than one such matrix more
    # (before: 2.02 and 2.32 of one), and the factor is the one a copy in
    # new memory gives (the spent factor's numbers are no part of it).
    import tracemalloc

    if data == "random":  # the stacked sums, every term kept
        rng = np.random.default_rng(0)
        X = rng.standard_normal((2000, 79))
        y = rng.integers(0, 6, 2000)
        max_iter, shift = 2, 0.01  # off zero: the dense Hessian, not the Kronecker one
    else:  # near the optimum: terms left out
        X, y = load_digits(return_X_y=True)
        max_iter, shift = 8, 0.0
    solver = _solver_after(X, y, max_iter)
    solver.theta = solver.theta + shift
    solver.budget = np.inf  # every row (the random data's 2000 would be sampled)
    solver.preconditioner = solver.tracer.preconditioner = None
    solver.update_preconditioner()
    spent = solver.preconditioner
    memory = spent.factor
    assert isinstance(spent, preconditioners.Preconditioner)
    tracemalloc.start()
    try:
        solver.update_preconditioner()
        allocated = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    factor = solver.preconditioner.factor
    assert factor is memory and spent.factor is None  # spent: it solves no more
    assert allocated <= 1.5 * memory.nbytes, allocated / memory.nbytes
    fresh = preconditioners.Preconditioner(
        solver.problem,
        solver.theta,
        solver.budget,
        np.random.default_rng(0),
        solver.null_weight,
        keep=True,  # the data Hessian kept, the factor a copy
        dtype=solver.hessian_dtype,
        omit_fraction=solver.omit_fraction,
    )
    assert fresh.factor is not fresh.data_hessian
    # equal to the bit with OpenBLAS; a BLAS whose rounding depends on the
    # memory's alignment may differ in the last bits, the spent factor's
    # numbers (order 1 against entries of order 1) would not
    np.testing.assert_allclose(factor, fresh.factor, rtol=1e-6, atol=1e-6 * np.abs(factor).max())


def test_a_hessian_factored_in_place_that_needs_a_ridge_is_formed_again(monkeypatch):
    # The first factorisation, with no ridge, runs in the Hessian's own
    # memory; where it fails (two equal columns, no penalty: singular in
    # float32) LAPACK leaves the matrix half factored, and the ridges'
    # tries need it whole: it is formed again, in the same memory. The
    # factor is then the one the tries on a copy give (the path that keeps
    # the Hessian).
    from skmultilogit._cholesky import HOST

    X, y = load_iris(return_X_y=True)
    X = np.hstack([X, X[:, :1]])
    solver = _solver_after(X, y, 3, C=np.inf)
    tries = []
    factorise = HOST.factorise
    monkeypatch.setattr(
        HOST,
        "factorise",
        lambda *args, **kwargs: (
            tries.append(kwargs.get("overwrite", False)) or factorise(*args, **kwargs)
        ),
    )

    def build(keep):
        return preconditioners.Preconditioner(
            solver.problem,
            solver.theta,
            solver.budget,
            None,
            solver.null_weight,
            keep=keep,
            dtype=np.float32,
        )

    outs, hessian = [], NumpyBackend.hessian

    def spy(self, *args, out=None, **kwargs):
        built = hessian(self, *args, out=out, **kwargs)
        outs.append((out, built))
        return built

    monkeypatch.setattr(NumpyBackend, "hessian", spy)
    in_place = build(keep=False)
    assert tries[0] and not any(tries[1:]) and len(tries) >= 2  # failed in place, then copies
    # formed again in the half-factored matrix's memory (not a third matrix
    # beside it and a try's copy)
    (first_out, first), (again_out, again) = outs
    assert first_out is None and again_out is first and again is first
    tries.clear()
    copied = build(keep=True)
    assert not any(tries) and len(tries) >= 2
    np.testing.assert_allclose(
        in_place.factor, copied.factor, rtol=1e-6, atol=1e-6 * np.abs(copied.factor).max()
    )


@pytest.mark.parametrize("widened", [False, True])
def test_a_spent_factor_a_build_cannot_use_is_freed_before_it(widened):
    # A rebuild hands the spent factor's memory to the next Hessian only
    # where the build uses it whole (classes stacked, the same dtype); held
    # through any other build unused, it was one matrix more at the build's
    # peak (K = 3, 400 features: 13.0 against 8.8 MiB).
    import weakref

    rng = np.random.default_rng(0)
    if widened:  # stacked, but the next factor is float64, the spent one float32
        X, y, max_iter = rng.standard_normal((600, 79)), rng.integers(0, 6, 600), 2
    else:  # K = 3: one buffer of pairs per thread, no stack
        X, y, max_iter = rng.standard_normal((900, 400)), rng.integers(0, 3, 900), 2
    solver = _solver_after(X, y, max_iter)
    solver.budget = np.inf
    solver.theta = solver.theta + 0.01
    solver.update_preconditioner()
    spent = weakref.ref(solver.preconditioner.factor)
    if widened:
        solver.hessian_dtype = np.float64
    seen = []
    hessian = NumpyBackend.hessian

    def spy(self, *args, out=None, **kwargs):
        seen.append((out, spent()))
        return hessian(self, *args, out=out, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(NumpyBackend, "hessian", spy)
        solver.update_preconditioner()
    assert seen == [(None, None)]  # no memory handed down, and the spent factor gone


@pytest.mark.parametrize(
    "seed, n, d, K, scale, offset, class_sep, C",
    [(27, 341, 26, 4, 3.89, 1.2, 1.41, 4.7e4), (29, 356, 18, 5, 2.18, 4.4, 1.65, 4.5e5)],
)
def test_near_separable_small_fits_reach_the_optimum(seed, n, d, K, scale, offset, class_sep, C):
    # A few hundred rows are more than 3 per parameter, so the factors were
    # of row samples' Hessians: too far from the whole one where the
    # curvature is weak in few rows. CG failed on every step, and these
    # default fits ran to max_iter=100 with a ConvergenceWarning, 1.4e-2 and
    # 7.2e-4 above the optimum. A small problem now takes all rows once a
    # sampled factor fails (22 and 20 iterations). The reference:
    # LogisticRegression's newton-cholesky to tol=1e-12.
    X, y = badly_scaled_classification(
        seed,
        scale,
        offset,
        n_samples=n,
        n_features=d,
        n_classes=K,
        class_sep=class_sep,
        flip_y=0.005,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        ours = MultinomialLogitClassifier(C=C).fit(X, y)
    assert_at_the_optimum(ours, X, y, C)


def test_newton_in_rounds_keeps_a_small_damping_where_full_steps_overshoot(monkeypatch):
    # Newton's method in rounds (the Dask solver), run in memory: 30 rows,
    # K = 17 mostly one-row classes, C = 1000, columns scaled by up to e^4.
    # With the damping zeroed as soon as it fell below its minimum, one good
    # damped step reset it, the next full step overshot: a wasted round per
    # iteration, 518 iterations and 1004 rounds (100 of 100 iterations at
    # the default max_iter, unconverged); 46 and 54 now.
    from skmultilogit._solvers import _driver
    from skmultilogit._solvers._newton_rounds import NewtonInRounds

    rounds = []

    def in_rounds(tracer, theta0, tol, max_iter, **_):
        solver = NewtonInRounds(tracer, tol, max_iter)
        evaluate = solver.evaluate
        solver.evaluate = lambda *a, **k: (rounds.append(1), evaluate(*a, **k))[1]
        return solver.solve(theta0)

    monkeypatch.setitem(_driver.SOLVER_RUNS, "newton-cholesky", in_rounds)
    rng = np.random.default_rng(5265)
    n = int(rng.choice([30, 200, 1500]))
    d = int(rng.choice([3, 10, 25]))
    K = int(rng.choice([3, 10, 40]))
    X = rng.standard_normal((n, d)) * np.exp(rng.uniform(-4, 4, d)) + rng.uniform(-5, 5, d)
    coef = rng.standard_normal((K, d)) / np.maximum(X.std(0), 1e-12) * rng.choice([0.3, 3])
    logits = (X - X.mean(0)) @ coef.T + np.log(rng.dirichlet(np.full(K, 0.3)) + 1e-12)
    y = (logits + rng.gumbel(size=(n, K))).argmax(1)
    assert (n, d, len(np.unique(y))) == (30, 3, 17)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = MultinomialLogitClassifier(solver="newton-cholesky", C=1000.0).fit(X, y)
    assert clf.n_iter_[0] <= 60 and len(rounds) <= 70, (clf.n_iter_, len(rounds))
    monkeypatch.undo()
    # The optimum is flat (near-separable): scikit-learn's lbfgs after 20 000
    # iterations and newton-cg (its CG runs away, and it says so) stop at
    # objectives of 37690 and 37816; the in-memory Newton-CG-Cholesky solver
    # at tol=1e-12 reaches the one found here, 37670.73371.
    reference = MultinomialLogitClassifier(solver="newton-cholesky", C=1000.0, tol=1e-12)
    reference.fit(X, y)

    def objective(model):
        proba = model.predict_proba(X)[np.arange(n), np.searchsorted(model.classes_, y)]
        return 1000.0 * np.sum(-np.log(proba)) + 0.5 * np.sum(model.coef_**2)

    assert objective(clf) <= objective(reference) * (1 + 1e-9)
    np.testing.assert_allclose(clf.predict_proba(X), reference.predict_proba(X), atol=1e-4)


def _two_loop(steps, changes, grad):
    """The L-BFGS direction ``-H grad`` by the two-loop recursion (Nocedal and Wright, Alg. 7.4)."""
    q = grad.copy()
    alphas = []
    for s, y in zip(reversed(steps), reversed(changes), strict=True):
        alpha = (s @ q) / (s @ y)
        alphas.append(alpha)
        q -= alpha * y
    r = (steps[-1] @ changes[-1]) / (changes[-1] @ changes[-1]) * q
    for s, y, alpha in zip(steps, changes, reversed(alphas), strict=True):
        r += (alpha - (y @ r) / (s @ y)) * s
    return -r


def test_compact_lbfgs_direction_is_the_two_loop_recursion():
    # The compact form is the two-loop recursion's direction computed otherwise:
    # checked on a quadratic through enough steps that the memory of 3 pairs
    # wraps around, with one pair whose s^T y < 0 (not kept: there the new
    # "gradient" is made up so that y = -H s).
    from skmultilogit._solvers._lbfgs import CompactLBFGS

    rng = np.random.default_rng(0)
    n = 30
    A = rng.normal(size=(n, n))
    hessian = A @ A.T + np.eye(n)
    b = rng.normal(size=n)

    def loss_gradient(theta):
        return 0.5 * theta @ hessian @ theta - b @ theta, hessian @ theta - b

    data = type("Data", (), {"dtype": np.dtype(np.float64)})
    tracer = type("Tracer", (), {"loss_gradient": staticmethod(loss_gradient)})()
    tracer.problem = type("Problem", (), {"loss": type("Loss", (), {"data": data})})
    solver = CompactLBFGS(tracer, tol=0.0, max_iter=0, memory=3)
    solver.setup(np.zeros(n))
    steps, changes = [], []
    for i in range(9):
        direction = solver.direction() if steps else -solver.grad
        theta_new = solver.theta + 0.3 * direction
        grad_new = loss_gradient(theta_new)[1]
        if i == 4:
            grad_new = solver.grad - (grad_new - solver.grad)
        s, y = theta_new - solver.theta, grad_new - solver.grad
        if s @ y > 0:
            steps.append(s)
            changes.append(y)
        solver.update_memory(theta_new, grad_new)
        solver.theta, solver.grad = theta_new, grad_new
        expected = _two_loop(steps[-3:], changes[-3:], grad_new)
        np.testing.assert_allclose(solver.direction(), expected, rtol=1e-10, atol=1e-12)


def test_compact_lbfgs_takes_the_steps_of_scipys_lbfgsb():
    # The same line search and the same quasi-Newton matrix as L-BFGS-B: the
    # objective's values along the way are L-BFGS-B's up to rounding, on the
    # same objective, a well-conditioned multinomial problem.
    from scipy.optimize import minimize

    from skmultilogit._solvers._lbfgs import CompactLBFGS

    X, y = load_iris(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    loss = MultinomialLoss.from_arrays(X, y, 3, np.ones(len(y)), 1.0, normalize=True)
    problem = driver.conditioned_problem(loss, feature_mean_scale(loss.data, True))
    tracer = driver.Tracer(problem, verbose=0)
    ours = []
    tracer.callback = lambda res: ours.append(res.fun)
    CompactLBFGS(tracer, 1e-10, 12).solve(np.zeros(loss.n_params))
    theirs = []
    minimize(
        problem.loss_gradient,
        np.zeros(loss.n_params),
        jac=True,
        method="L-BFGS-B",
        callback=lambda intermediate_result: theirs.append(intermediate_result.fun),
        options={"maxiter": 12, "gtol": 1e-10, "ftol": 0.0},
    )
    assert len(ours) == len(theirs) == 12
    np.testing.assert_allclose(ours, theirs, rtol=1e-9)


def test_compact_lbfgs_shrinks_a_first_step_whose_objective_overflows():
    # Beyond a radius of 0.5 the objective is inf (as an overflowing loss
    # would be); the first step, of unit length, lands there. The line search
    # shrinks it until finite and the run reaches the minimiser inside.
    from skmultilogit._solvers._lbfgs import CompactLBFGS

    target = np.array([0.1, -0.2, 0.05])
    curvature = np.array([1.0, 4.0, 9.0])

    def loss_gradient(theta):
        if np.linalg.norm(theta) > 0.5:
            return np.inf, np.full(3, np.nan)
        return 0.5 * curvature @ (theta - target) ** 2, curvature * (theta - target)

    data = type("Data", (), {"dtype": np.dtype(np.float64)})
    tracer = type("Tracer", (), {"loss_gradient": staticmethod(loss_gradient)})()
    tracer.problem = type(
        "Problem",
        (),
        {
            "loss": type("Loss", (), {"data": data}),
            "stationarity": staticmethod(lambda theta, grad: grad),
        },
    )
    tracer.callback = lambda res: None
    res = CompactLBFGS(tracer, tol=1e-10, max_iter=50).solve(np.array([0.0, 0.45, 0.0]))
    assert res.message == "gradient tolerance met"
    np.testing.assert_allclose(res.x, target, atol=1e-10)


def test_a_factor_that_leaves_terms_out_preconditions_within_a_tenth():
    # newton-cholesky's factors may leave out terms of the data Hessian of
    # summed norm up to a tenth of the penalty's least curvature. Without an
    # intercept every direction is penalised, so the exact Hessian's
    # spectrum relative to the factor's matrix lies in [1, 1.1] (a float64
    # factor: float32's own rounding is not what is checked). The bound is
    # loose here (the left-out terms point in many directions): 300 times
    # the allowance stays within it, 3000 times does not; test_loss checks
    # the left-out part against its allowance sharply.
    import scipy.linalg

    X, y = load_digits(return_X_y=True)
    X, y = X[:500], y[:500]
    model = MultinomialLogitClassifier(fit_intercept=False).fit(X, y)
    loss = MultinomialLoss.from_arrays(X, y, 10, np.ones(500), 1.0, fit_intercept=False,
                                       normalize=True)  # fmt: skip
    mean, spread = feature_mean_scale(loss.data, False)
    problem = ConditionedProblem(
        loss, mean, feature_scale(spread, loss.penalty.l2_strength), inert=spread == 0
    )
    theta = problem.to_conditioned(model.coef_.ravel())
    pre = preconditioners.Preconditioner(
        problem, theta, np.inf, None, 0.0, dtype=np.float64, omit_fraction=0.1
    )
    assert not pre.exact
    added = preconditioners.added_diagonal(problem)
    exact = np.triu(problem.data_hessian(theta, dtype=np.float64)) + np.diag(added)
    exact = exact + np.triu(exact, 1).T
    factor = np.triu(pre.factor)
    relative = scipy.linalg.eigh(exact, factor.T @ factor, eigvals_only=True)
    assert relative.min() >= 1 - 1e-9
    assert relative.max() <= 1.1 + 1e-9
    assert relative.max() > 1 + 1e-6  # terms were left out


def test_after_a_factor_with_terms_left_out_fails_the_factors_are_whole(monkeypatch):
    # A factor that left out nearly everything (a million times the
    # penalty's curvature allowed) cannot solve a step in the CG budget:
    # the factors after it are whole, and the fit ends at the optimum the
    # whole ones reach.
    import skmultilogit._solvers._newton_cholesky as newton_cholesky

    X, y = load_digits(return_X_y=True)
    reference = MultinomialLogitClassifier().fit(X, y)
    built = []
    original = preconditioners.Preconditioner.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        built.append(kwargs.get("omit_fraction", 0.0))

    monkeypatch.setattr(preconditioners.Preconditioner, "__init__", spy)
    monkeypatch.setattr(newton_cholesky, "OMIT_FRACTION", 1e6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = MultinomialLogitClassifier().fit(X, y)
    assert built[0] == 1e6 and built[1:] and set(built[1:]) == {0.0}, built
    objective = written_out_objective(X, y, 1.0, model.coef_, model.intercept_)
    expected = written_out_objective(X, y, 1.0, reference.coef_, reference.intercept_)
    assert abs(objective - expected) <= 1e-12 * expected
