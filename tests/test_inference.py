"""Inference against statsmodels' MNLogit, finite differences, and simulation."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import logsumexp
from sklearn.datasets import load_digits
from sklearn.preprocessing import StandardScaler

from skmultilogit import MultinomialLogitClassifier, MultinomialLogitClassifierCV, inference

sm = pytest.importorskip("statsmodels.api")

ANES_FEATURES = ["logpopul", "selfLR", "age", "educ", "income"]
TIGHT = dict(tol=1e-10, max_iter=1000)


@pytest.fixture(scope="module")
def anes():
    data = sm.datasets.anes96.load_pandas()
    return data.exog[ANES_FEATURES], data.endog.to_numpy()


@pytest.fixture(scope="module")
def anes_mnlogit(anes):
    X, y = anes
    model = sm.MNLogit(y, sm.add_constant(X))

    def fit(**params):
        return model.fit(method="newton", tol=1e-12, maxiter=100, disp=0, **params)

    return fit


@pytest.fixture(scope="module")
def anes_fit(anes):
    X, y = anes
    return MultinomialLogitClassifier(C=np.inf, **TIGHT).fit(X, y)


def assert_relative(actual, desired, rtol=1e-6):
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=0)


def test_unpenalised_inference_equals_statsmodels(anes, anes_mnlogit, anes_fit):
    X, y = anes
    reference = anes_mnlogit()
    result = inference(anes_fit, X, y)
    # statsmodels: (terms, K - 1) frames, class 0 the reference
    assert_relative(result.params, reference.params.to_numpy().T)
    assert_relative(result.bse, reference.bse.to_numpy().T)
    assert_relative(result.zvalues, reference.tvalues.to_numpy().T)
    assert_relative(result.pvalues, reference.pvalues.to_numpy().T)
    assert_relative(result.cov, reference.cov_params().to_numpy())
    assert_relative(result.conf_int(), reference.conf_int().to_numpy().reshape(6, 6, 2))
    assert_relative(
        result.conf_int(alpha=0.1), reference.conf_int(alpha=0.1).to_numpy().reshape(6, 6, 2)
    )
    assert result.term_names == ["intercept"] + ANES_FEATURES
    np.testing.assert_array_equal(result.classes, [1, 2, 3, 4, 5, 6])
    assert result.reference_class == 0


@pytest.mark.parametrize("cov_type", ["HC0", "cluster"])
def test_sandwich_covariances_equal_statsmodels(anes, anes_mnlogit, anes_fit, cov_type):
    X, y = anes
    groups = np.arange(len(y)) % 37
    kwds = {"cov_kwds": {"groups": groups}} if cov_type == "cluster" else {}
    reference = anes_mnlogit(cov_type=cov_type, **kwds)
    result = inference(
        anes_fit, X, y, cov_type=cov_type, groups=groups if cov_type == "cluster" else None
    )
    assert_relative(result.cov, reference.cov_params().to_numpy())
    assert_relative(result.pvalues, reference.pvalues.to_numpy().T)


def test_hc1_is_hc0_with_the_degrees_of_freedom_factor(anes, anes_mnlogit, anes_fit):
    # statsmodels' MNLogit reports HC0 under "HC1" (no factor); ours applies
    # MacKinnon and White's n / (n - k), with statsmodels' own df_resid as n - k.
    X, y = anes
    hc0 = inference(anes_fit, X, y, cov_type="HC0").cov
    hc1 = inference(anes_fit, X, y, cov_type="HC1").cov
    reference = anes_mnlogit(cov_type="HC1")
    assert_relative(hc1, hc0 * reference.nobs / reference.df_resid, rtol=1e-12)


def test_marginal_effects_equal_statsmodels(anes, anes_mnlogit, anes_fit):
    X, y = anes
    reference = anes_mnlogit().get_margeff(at="overall", method="dydx")
    effects = inference(anes_fit, X, y).marginal_effects()
    assert effects.effects.shape == (7, 5)
    assert_relative(effects.effects, reference.margeff.T)
    # statsmodels differentiates numerically; agreement is to its accuracy
    assert_relative(effects.se, reference.margeff_se.T, rtol=1e-5)
    assert_relative(effects.pvalues, reference.pvalues.T, rtol=1e-4)
    np.testing.assert_allclose(effects.effects.sum(axis=0), 0.0, atol=1e-12)


def test_reference_class_changes_only_the_contrasts(anes, anes_mnlogit, anes_fit):
    X, y = anes
    base = inference(anes_fit, X, y)
    other = inference(anes_fit, X, y, reference_class=3)
    assert other.reference_class == 3
    np.testing.assert_array_equal(other.classes, [0, 1, 2, 4, 5, 6])
    # beta_m(ref=3) = beta_m(ref=0) - beta_3(ref=0); beta_0(ref=3) = -beta_3(ref=0)
    np.testing.assert_allclose(other.params[0], -base.params[2], atol=1e-12)
    np.testing.assert_allclose(other.bse[0], base.bse[2], rtol=1e-9)
    # statsmodels with the classes relabelled so that 3 comes first
    relabelled = np.where(y == 3, -1, y)
    reference = sm.MNLogit(relabelled, sm.add_constant(X)).fit(
        method="newton", tol=1e-12, maxiter=100, disp=0
    )
    assert_relative(other.bse, reference.bse.to_numpy().T)
    # the marginal effects do not depend on the reference
    me_base, me_other = base.marginal_effects(), other.marginal_effects()
    np.testing.assert_allclose(me_other.effects, me_base.effects, atol=1e-14)
    np.testing.assert_allclose(me_other.se, me_base.se, rtol=1e-8)


@pytest.mark.parametrize("cov_type", ["nonrobust", "HC0", "HC1", "cluster"])
def test_integer_weights_equal_repeated_rows(anes, cov_type):
    X, y = anes
    X = X.to_numpy()
    counts = np.random.default_rng(0).integers(1, 4, size=len(y))
    groups = np.arange(len(y)) % 29
    repeated = np.repeat(np.arange(len(y)), counts)
    weighted_fit = MultinomialLogitClassifier(C=np.inf, **TIGHT).fit(X, y, sample_weight=counts)
    repeated_fit = MultinomialLogitClassifier(C=np.inf, **TIGHT).fit(X[repeated], y[repeated])
    cluster = cov_type == "cluster"
    weighted = inference(
        weighted_fit, X, y, counts, cov_type=cov_type, groups=groups if cluster else None
    )
    reference = inference(
        repeated_fit,
        X[repeated],
        y[repeated],
        cov_type=cov_type,
        groups=groups[repeated] if cluster else None,
    )
    assert_relative(weighted.params, reference.params)
    assert_relative(weighted.cov, reference.cov)
    me_weighted, me_repeated = weighted.marginal_effects(), reference.marginal_effects()
    assert_relative(me_weighted.effects, me_repeated.effects)
    assert_relative(me_weighted.se, me_repeated.se)
    lower, upper = weighted.predict_proba_interval(X[:50])
    lower_ref, upper_ref = reference.predict_proba_interval(X[:50])
    assert_relative(lower, lower_ref)
    assert_relative(upper, upper_ref)


@pytest.mark.parametrize("cov_type", ["nonrobust", "HC0", "HC1", "cluster"])
def test_rows_of_zero_weight_are_no_rows(anes, cov_type):
    # whole groups of them too: the cluster factor G / (G - 1) counts the others
    X, y = anes
    X = X.to_numpy()
    groups = np.arange(len(y)) % 7
    weight = np.where(groups == 3, 0.0, 1.0)
    kept = weight > 0
    groups_if = (lambda g: g) if cov_type == "cluster" else (lambda g: None)
    weighted_fit = MultinomialLogitClassifier(C=np.inf, **TIGHT).fit(X, y, sample_weight=weight)
    kept_fit = MultinomialLogitClassifier(C=np.inf, **TIGHT).fit(X[kept], y[kept])
    weighted = inference(weighted_fit, X, y, weight, cov_type=cov_type, groups=groups_if(groups))
    reference = inference(
        kept_fit, X[kept], y[kept], cov_type=cov_type, groups=groups_if(groups[kept])
    )
    assert_relative(weighted.params, reference.params)
    assert_relative(weighted.cov, reference.cov)


def test_cluster_covariance_needs_two_groups_of_positive_weight(anes, anes_fit):
    X, y = anes
    groups = (np.arange(len(y)) >= 400).astype(int)
    weight = np.where(groups == 1, 0.0, 1.0)
    clf = MultinomialLogitClassifier(C=1.0).fit(X, y, sample_weight=weight)
    with pytest.raises(ValueError, match="at least 2 groups with a positive total weight"):
        inference(clf, X, y, weight, cov_type="cluster", groups=groups)


def test_sparse_and_float32_data_give_the_dense_result(anes):
    X, y = anes
    X = X.to_numpy()
    dense_fit = MultinomialLogitClassifier(C=np.inf, **TIGHT).fit(X, y)
    dense = inference(dense_fit, X, y)
    sparse_fit = MultinomialLogitClassifier(C=np.inf, **TIGHT).fit(sp.csr_matrix(X), y)
    sparse = inference(sparse_fit, sp.csr_matrix(X), y)
    assert_relative(sparse.cov, dense.cov, rtol=1e-5)
    assert_relative(sparse.marginal_effects().se, dense.marginal_effects().se, rtol=1e-5)
    # float32 data: the model is float32, the inference float64 at its estimate
    single_fit = MultinomialLogitClassifier(C=np.inf, tol=1e-5).fit(X.astype(np.float32), y)
    single = inference(single_fit, X.astype(np.float32), y)
    assert single.cov.dtype == np.float64
    assert_relative(single.bse, dense.bse, rtol=1e-3)


def penalised_objective_hessian(coef, intercept, X, y_index, C, step=1e-5):
    """Central differences of ``L + ||W||^2 / (2C)``'s gradient, written out independently.

    Returns the Hessian in (class, [intercept, coefficients]) order.
    """
    n_classes, n_features = coef.shape
    theta = np.hstack([intercept[:, None], coef]).ravel()
    design = np.hstack([np.ones((X.shape[0], 1)), X])
    onehot = np.eye(n_classes)[y_index]

    def gradient(flat):
        rows = flat.reshape(n_classes, n_features + 1)
        logits = design @ rows.T
        proba = np.exp(logits - logsumexp(logits, axis=1, keepdims=True))
        grad = (proba - onehot).T @ design
        grad[:, 1:] += rows[:, 1:] / C
        return grad.ravel()

    columns = []
    for index in range(theta.size):
        shift = np.zeros_like(theta)
        shift[index] = step
        columns.append((gradient(theta + shift) - gradient(theta - shift)) / (2 * step))
    return np.array(columns).T


def test_penalised_covariance_is_the_inverse_penalised_hessian_of_the_contrasts():
    # With C < inf the penalty pins every coefficient; only the intercepts
    # share a free shift. The covariance of the contrasts is then
    # A H^+ A^T for the penalised Hessian H (finite differences here).
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = rng.integers(0, 3, size=300)
    C = 0.05
    clf = MultinomialLogitClassifier(C=C, **TIGHT).fit(X, y)
    result = inference(clf, X, y)
    hessian = penalised_objective_hessian(clf.coef_, clf.intercept_, X, y, C)
    contrast = np.kron(np.array([[-1.0, 1.0, 0.0], [-1.0, 0.0, 1.0]]), np.eye(4))
    expected = contrast @ np.linalg.pinv(hessian, rcond=1e-10) @ contrast.T
    assert_relative(result.cov, expected, rtol=1e-5)
    assert np.all(result.bse > 0)


def test_sandwich_matches_the_sampling_spread_of_the_penalised_estimate():
    # The sandwich estimates the spread of the penalised estimate over
    # repeated samples: check it against that spread, simulated.
    rng = np.random.default_rng(1)
    coef = np.array([[0.0, 0.0], [1.0, -0.5], [-0.5, 1.0]])
    intercept = np.array([0.0, 0.3, -0.2])
    n_samples, n_repeats, C = 400, 300, 0.01
    estimates, sandwich_se = [], []
    for _ in range(n_repeats):
        X = rng.normal(size=(n_samples, 2))
        logits = X @ coef.T + intercept
        y = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)
        clf = MultinomialLogitClassifier(C=C, tol=1e-8).fit(X, y)
        result = inference(clf, X, y, cov_type="HC0")
        estimates.append(result.params)
        sandwich_se.append(result.bse)
    empirical = np.std(estimates, axis=0, ddof=1)
    # 300 repeats pin a standard deviation to about 4 %
    np.testing.assert_allclose(np.mean(sandwich_se, axis=0), empirical, rtol=0.12)


def test_probability_intervals_cover_the_true_probabilities():
    rng = np.random.default_rng(2)
    coef = np.array([[0.0, 0.0], [1.0, -0.5], [-0.5, 1.0]])
    intercept = np.array([0.0, 0.3, -0.2])
    X_new = np.array([[0.0, 0.0], [1.0, 1.0], [-1.5, 0.5], [2.0, -1.0], [0.5, -2.0]])
    true_logits = X_new @ coef.T + intercept
    true_proba = np.exp(true_logits - logsumexp(true_logits, axis=1, keepdims=True))
    n_repeats = 400
    covered = np.zeros((len(X_new), 3))
    for _ in range(n_repeats):
        X = rng.normal(size=(300, 2))
        logits = X @ coef.T + intercept
        y = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)
        clf = MultinomialLogitClassifier(C=np.inf, tol=1e-8).fit(X, y)
        lower, upper = inference(clf, X, y).predict_proba_interval(X_new)
        assert np.all((0 <= lower) & (lower <= upper) & (upper <= 1))
        covered += (lower <= true_proba) & (true_proba <= upper)
    coverage = covered.sum(axis=0) / (n_repeats * len(X_new))
    # per class, 2000 intervals: 95 % +- 1 % binomial error, more with the
    # correlation between points of one sample
    np.testing.assert_allclose(coverage, 0.95, atol=0.025)


def test_probability_intervals_far_out_are_finite_and_quiet():
    # Features of 1e155 and more: the quadratic form x Cov x overflowed and
    # the bounds came back NaN; at 1e4 the dominant class's own exp
    # overflowed (a RuntimeWarning) in an entry the gradient never used.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2))
    y = np.argmax(X @ np.array([[0.0, 0.0], [2.0, -1.0], [-1.0, 2.0]]).T
                  + rng.gumbel(size=(300, 3)), axis=1)  # fmt: skip
    result = inference(MultinomialLogitClassifier(C=np.inf, **TIGHT).fit(X, y), X, y)
    X_new = np.array([[0.3, -0.2], [1e4, -1e4], [1e160, -1e160], [-1e300, 1e300]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lower, upper = result.predict_proba_interval(X_new)
    assert np.all((0 <= lower) & (lower <= upper) & (upper <= 1))
    # the delta method's bounds for the first row, written out: the log-odds
    # of class k against the rest, its gradient in the contrasts, its variance
    theta = np.insert(result.params, result._reference, 0.0, axis=0)
    x = np.r_[1.0, X_new[0]]
    logits = theta @ x
    for k in range(3):
        rest = np.delete(np.arange(3), k)
        weights = np.exp(logits[rest] - logsumexp(logits[rest]))
        gradient_rows = -np.insert(weights, k, 0.0)[:, None] * x
        gradient_rows[k] += x
        gradient = np.delete(gradient_rows, result._reference, axis=0).ravel()
        eta = logits[k] - logsumexp(logits[rest])
        half = 1.959963984540054 * np.sqrt(gradient @ result.cov @ gradient)
        expected = 1 / (1 + np.exp(-(eta - half))), 1 / (1 + np.exp(-(eta + half)))
        np.testing.assert_allclose([lower[0, k], upper[0, k]], expected, rtol=1e-12)


def test_standardised_digits_with_a_penalty_give_finite_positive_errors():
    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    clf = MultinomialLogitClassifier(C=1.0).fit(X, y)
    result = inference(clf, X, y)
    assert result.params.shape == (9, 65)
    assert np.all(np.isfinite(result.bse)) and np.all(result.bse > 0)
    assert np.all(np.isfinite(result.pvalues))
    # against the penalised Hessian by finite differences, written out independently
    hessian = penalised_objective_hessian(clf.coef_, clf.intercept_, X, y, 1.0)
    contrast = np.kron(np.hstack([-np.ones((9, 1)), np.eye(9)]), np.eye(65))
    expected = contrast @ np.linalg.pinv(hessian, rcond=1e-10) @ contrast.T
    np.testing.assert_allclose(result.bse.ravel(), np.sqrt(np.diag(expected)), rtol=1e-5)
    effects = result.marginal_effects()
    assert np.all(np.isfinite(effects.se))
    lower, upper = result.predict_proba_interval(X[:20])
    assert np.all((0 <= lower) & (lower <= upper) & (upper <= 1))


def test_raw_digits_without_a_penalty_name_the_unidentified_columns():
    X, y = load_digits(return_X_y=True)
    constant = np.flatnonzero(X.std(axis=0) == 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # separable: no finite optimum
        clf = MultinomialLogitClassifier(C=np.inf, max_iter=50).fit(X, y)
    names = ", ".join(f"'x{j}'" for j in constant)
    with pytest.raises(ValueError, match=rf"not identified: \[{names}\].*finite C"):
        inference(clf, X, y)


def test_collinear_columns_are_named():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 3))
    X = np.column_stack([X, X[:, 0] - 2 * X[:, 2]])
    y = rng.integers(0, 3, size=200)
    clf = MultinomialLogitClassifier(C=np.inf).fit(X, y)
    with pytest.raises(ValueError, match=r"\['x3'\] are constant or \(numerically\) linear"):
        inference(clf, X, y)


def separated_problems():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(300, 2))
    overlapping = (X[:, 0] + rng.normal(size=300) > 0).astype(int)
    return {
        # a normal fit: it converges, with own-class probabilities of 0.999
        "complete": (X, (X[:, 0] > 0).astype(int), None),
        "quasi-complete": (X, np.where(X[:, 0] > 0.8, 2, overlapping), None),
        # a class whose rows all have zero weight: its intercept runs to -inf
        "empty class": (
            X,
            np.r_[overlapping[:-20], np.full(20, 2)],
            np.r_[np.ones(280), np.zeros(20)],
        ),
        "overlapping": (X, overlapping, None),
    }


@pytest.mark.parametrize("name", list(separated_problems()))
def test_separated_classes_without_a_penalty_raise(name):
    X, y, sample_weight = separated_problems()[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = MultinomialLogitClassifier(C=np.inf).fit(X, y, sample_weight=sample_weight)
    if name == "overlapping":
        assert np.all(np.isfinite(inference(clf, X, y, sample_weight).bse))
        return
    with pytest.raises(ValueError, match="separated by the features"):
        inference(clf, X, y, sample_weight)
    penalised = MultinomialLogitClassifier(C=1.0).fit(X, y, sample_weight=sample_weight)
    if name == "empty class":
        # The intercept is not penalised: an empty class's runs to -inf with
        # a penalty too. Its "standard errors" were finite numbers that grew
        # with the fit's tol (1.8e4 at tol=1e-4, 1.7e5 at 1e-12).
        with pytest.raises(ValueError, match=r"class\(es\) \[2\] have zero total weight"):
            inference(penalised, X, y, sample_weight)
        no_intercept = MultinomialLogitClassifier(C=1.0, fit_intercept=False)
        no_intercept.fit(X, y, sample_weight=sample_weight)
        assert np.all(np.isfinite(inference(no_intercept, X, y, sample_weight).bse))
        return
    # with a penalty the estimate is finite, and so are its standard errors
    assert np.all(np.isfinite(inference(penalised, X, y, sample_weight).bse))


def test_a_failed_separation_check_is_not_read_as_no_separation(monkeypatch):
    # The linear program that detects separation may fail (numerical trouble,
    # iteration limit): inference must then refuse, not report standard errors.
    import scipy.optimize
    from scipy.optimize import OptimizeResult

    X, y, _ = separated_problems()["overlapping"]
    clf = MultinomialLogitClassifier(C=np.inf, **TIGHT).fit(X, y)
    methods = []

    def failing_linprog(*args, method, **kwargs):
        methods.append(method)
        return OptimizeResult(status=4, message="Numerical difficulties encountered.", fun=0.0)

    monkeypatch.setattr(scipy.optimize, "linprog", failing_linprog)
    with pytest.raises(ValueError, match=r"Could not tell whether the classes are separated.*"
                       r"Numerical difficulties encountered.*finite C"):  # fmt: skip
        inference(clf, X, y)
    assert methods == ["highs", "highs-ds", "highs-ipm"]  # each of HiGHS's methods was tried
    monkeypatch.undo()
    assert np.all(np.isfinite(inference(clf, X, y).bse))


def test_cross_validated_model_uses_its_chosen_C(anes):
    X, y = anes
    cv = MultinomialLogitClassifierCV(Cs=[0.01, 0.1], cv=3, tol=1e-10).fit(X, y)
    plain = MultinomialLogitClassifier(C=cv.C_, **TIGHT).fit(X, y)
    assert_relative(inference(cv, X, y).cov, inference(plain, X, y).cov, rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(cov_type="HC3"), "cov_type must be one of"),
        (dict(cov_type="cluster"), "groups are needed"),
        (dict(groups=np.zeros(944)), "groups are needed"),
        (dict(cov_type="cluster", groups=np.zeros(944)), "at least 2 groups"),
        (dict(reference_class=9), "reference_class=9 is not one of"),
        # labels np.unique cannot sort (a TypeError from numpy before), and
        # NaN labels it put in one cluster
        (
            dict(cov_type="cluster", groups=np.array([1, "a"] * 472, dtype=object)),
            "cluster labels of one kind that sort together",
        ),
        (
            dict(cov_type="cluster", groups=np.array([None, "a"] * 472, dtype=object)),
            "groups contains missing labels",
        ),
        (
            dict(
                cov_type="cluster", groups=np.where(np.arange(944) % 3, np.arange(944) % 5, np.nan)
            ),
            "groups contains missing labels",
        ),
        (
            dict(cov_type="cluster", groups=np.array([1, 2, np.nan, 3] * 236, dtype=object)),
            "groups contains missing labels",
        ),
    ],
)
def test_bad_arguments(anes, anes_fit, kwargs, match):
    X, y = anes
    with pytest.raises(ValueError, match=match):
        inference(anes_fit, X, y, **kwargs)


@pytest.mark.parametrize("cov_type", ["HC1", "cluster"])
def test_small_sample_factors_need_more_observations_than_parameters(cov_type):
    # n / (n - k) was negative for n < k: negative variances, standard errors
    # of 0 and p-values of 0 without a word; weights summing to 1 are n = 1
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(300, 4)), rng.integers(0, 3, 300)
    groups = np.arange(300) % 10 if cov_type == "cluster" else None
    weight = rng.uniform(0.5, 2.0, 300)
    for sample_weight in (weight / weight.sum(), weight * 10 / weight.sum()):
        clf = MultinomialLogitClassifier(C=1.0).fit(X, y, sample_weight=sample_weight)
        with pytest.raises(
            ValueError, match=r"needs more observations n than parameters k = .* 10"
        ):
            inference(clf, X, y, sample_weight, cov_type=cov_type, groups=groups)
    # frequencies that count the rows: positive variances, as HC0's times the factor
    clf = MultinomialLogitClassifier(C=1.0).fit(X, y, sample_weight=weight)
    result = inference(clf, X, y, weight, cov_type=cov_type, groups=groups)
    assert np.all(np.diag(result.cov) > 0)


def test_labels_and_models_it_cannot_use(anes, anes_fit):
    X, y = anes
    with pytest.raises(ValueError, match=r"labels the estimator was not fitted on: \[9"):
        inference(anes_fit, X, np.where(y == 6, 9, y))
    l1 = MultinomialLogitClassifier(C=0.1, l1_ratio=0.5, max_iter=5000).fit(X, y)
    with pytest.raises(ValueError, match="L2 penalty or none"):
        inference(l1, X, y)
    with pytest.warns(UserWarning, match="not at the optimum"):
        inference(anes_fit, X, np.roll(y, 1))


def test_summary_and_frame(anes, anes_fit):
    X, y = anes
    result = inference(anes_fit, X, y)
    text = str(result.summary())
    assert "reference class 0.0," in text and "P>|z|" in text and "[0.025" in text
    assert len(text.splitlines()) == 4 + 36
    assert "<table>" in result.summary()._repr_html_()
    pd = pytest.importorskip("pandas")
    frame = result.to_frame()
    assert isinstance(frame, pd.DataFrame)
    assert frame.shape == (36, 6)
    np.testing.assert_array_equal(frame["coef"].to_numpy(), result.params.ravel())
    assert frame.index[1] == (1, "logpopul")


@pytest.mark.parametrize("fmt", ["dense", "csr", "csc"])
def test_a_feature_far_from_zero_is_identified(fmt):
    # 1e6 + 0.01 z: uncentred, this column lies within rounding of the
    # intercept's span; the model is the one on z with the slope scaled.
    # (Sparse X once gave it spread 0 with this seed, coefficient 0 and
    # p = 1, no warning.)
    rng = np.random.default_rng(4)
    X = rng.normal(size=(400, 3))
    logits = X @ rng.normal(size=(3, 3))
    y = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)
    shifted = X.copy()
    shifted[:, 1] = 1e6 + 0.01 * X[:, 1]
    base = inference(MultinomialLogitClassifier(C=np.inf, **TIGHT).fit(X, y), X, y)
    # (the fit itself resolves such data to a gradient of about 1e-8 only:
    # the gradient in the centred coordinates is a difference of sums 1e6 times
    # larger, so its tol is 1e-7 here)
    far_fit = MultinomialLogitClassifier(C=np.inf, solver="newton-cg", tol=1e-7, max_iter=1000)
    if fmt != "dense":
        shifted = sp.csr_matrix(shifted).asformat(fmt)
    far = inference(far_fit.fit(shifted, y), shifted, y)
    assert_relative(far.params[:, [1, 3]], base.params[:, [1, 3]], rtol=1e-4)
    assert_relative(far.bse[:, [1, 3]], base.bse[:, [1, 3]], rtol=1e-4)
    assert_relative(0.01 * far.params[:, 2], base.params[:, 2], rtol=1e-4)
    assert_relative(0.01 * far.bse[:, 2], base.bse[:, 2], rtol=1e-4)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_feature_units_do_not_matter(anes, anes_mnlogit, fit_intercept):
    # Income in units 1e6 times larger and age in units 1e7 times smaller:
    # their coefficients and standard errors scale by the inverse factor,
    # everything else is statsmodels' on the original units.
    X, y = anes
    X = X.to_numpy()
    scale = np.ones(X.shape[1])
    scale[ANES_FEATURES.index("income")] = 1e6
    scale[ANES_FEATURES.index("age")] = 1e-7
    if fit_intercept:
        reference = anes_mnlogit()
    else:
        reference = sm.MNLogit(y, X).fit(method="newton", tol=1e-12, maxiter=100, disp=0)
    terms = np.r_[1.0, scale] if fit_intercept else scale
    clf = MultinomialLogitClassifier(C=np.inf, fit_intercept=fit_intercept, **TIGHT)
    result = inference(clf.fit(X * scale, y), X * scale, y)
    params, bse, pvalues = (
        np.asarray(values).T for values in (reference.params, reference.bse, reference.pvalues)
    )
    assert_relative(result.params * terms, params, rtol=1e-8)
    assert_relative(result.bse * terms, bse, rtol=1e-8)
    assert_relative(result.pvalues, pvalues, rtol=1e-8)


@pytest.mark.parametrize(
    "changed",
    [
        dict(C=100.0),
        dict(fit_intercept=False),
        dict(class_weight=None),
        dict(coef_bounds=(-0.01, 0.01)),
        dict(l1_ratio=0.5),
    ],
    ids=lambda changed: next(iter(changed)),
)
def test_inference_is_of_the_model_as_fitted_not_as_re_set(anes, changed):
    # set_params without a refit changes the parameters, not the model: the
    # standard errors must still be those of the fitted objective, with no
    # warning that the model is off its optimum.
    X, y = anes
    params = dict(C=1.0, class_weight="balanced", **TIGHT)
    expected = inference(MultinomialLogitClassifier(**params).fit(X, y), X, y)
    clf = MultinomialLogitClassifier(**params).fit(X, y).set_params(**changed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = inference(clf, X, y)
    assert result.term_names == expected.term_names
    assert result.C == expected.C
    np.testing.assert_allclose(result.params, expected.params, rtol=1e-12)
    np.testing.assert_allclose(result.cov, expected.cov, rtol=1e-10)


def test_the_cross_validated_model_as_fitted_not_as_re_set(anes):
    X, y = anes
    cv = MultinomialLogitClassifierCV(Cs=[0.01, 0.1], cv=3, tol=1e-10).fit(X, y)
    expected = inference(cv, X, y)
    cv.set_params(fit_intercept=False, class_weight="balanced")
    result = inference(cv, X, y)
    assert result.term_names[0] == "intercept"
    np.testing.assert_allclose(result.cov, expected.cov, rtol=1e-10)


def test_a_box_or_an_l1_part_at_fit_time_is_refused_after_set_params(anes):
    X, y = anes
    boxed = MultinomialLogitClassifier(coef_bounds=(-0.05, 0.05), max_iter=5000).fit(X, y)
    with pytest.raises(ValueError, match="fitted without coef_bounds"):
        inference(boxed.set_params(coef_bounds=None), X, y)
    l1 = MultinomialLogitClassifier(C=0.1, l1_ratio=0.5, max_iter=5000).fit(X, y)
    with pytest.raises(ValueError, match="L2 penalty or none"):
        inference(l1.set_params(l1_ratio=0.0), X, y)


def test_a_result_keeps_its_model_when_the_estimator_is_refitted(anes):
    X, y = anes
    clf = MultinomialLogitClassifier(C=1.0, **TIGHT).fit(X, y)
    result = inference(clf, X, y)
    lower, upper = result.predict_proba_interval(X[:5])
    effects = result.marginal_effects()
    clf.set_params(C=0.01, fit_intercept=False).fit(X.iloc[:, :3], y)
    again_lower, again_upper = result.predict_proba_interval(X[:5])
    np.testing.assert_array_equal(again_lower, lower)
    np.testing.assert_array_equal(again_upper, upper)
    np.testing.assert_array_equal(result.marginal_effects().effects, effects.effects)
    np.testing.assert_array_equal(result.marginal_effects().se, effects.se)


def test_coefficients_set_by_hand_after_a_fit_are_read_with_the_parameters(anes):
    # The record of the earlier fit belongs to its coefficients: copied in
    # from a C=0.05 fit, with C set to match, they get the C=0.05 inference.
    X, y = anes
    penalised = MultinomialLogitClassifier(C=0.05, **TIGHT).fit(X, y)
    expected = inference(penalised, X, y)
    clf = MultinomialLogitClassifier(C=np.inf, **TIGHT).fit(X, y).set_params(C=0.05)
    clf.coef_, clf.intercept_ = penalised.coef_.copy(), penalised.intercept_.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = inference(clf, X, y)
    assert result.C == 0.05
    np.testing.assert_allclose(result.cov, expected.cov, rtol=1e-10)
