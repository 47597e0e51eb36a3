"""The group lasso across classes (``l1_groups="feature"``).

References: cyanure's ``penalty="l1l2"`` optimum on the same objective
(``lambda_1 = alpha / (C n)``, the intercept unpenalised), where cyanure is
installed; and the optimality conditions computed from ``predict_proba``
alone, which hold at the minimiser whatever solver found it.
"""

import warnings

import numpy as np
import pytest
from scipy.special import logsumexp
from sklearn.datasets import load_digits, load_iris, load_wine
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from skmultilogit import MultinomialLogitClassifier, MultinomialLogitClassifierCV


def standardised(loader):
    X, y = loader(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def objective(coef, intercept, X, y, C, alpha, weight=None):
    """``C sum s_i (-log P) + alpha sum_j ||W[:, j]|| + (1 - alpha)/2 ||W||^2``."""
    weight = np.ones(len(y)) if weight is None else weight
    Z = X @ coef.T + intercept
    data = weight @ (logsumexp(Z, axis=1) - Z[np.arange(len(y)), y])
    groups = np.linalg.norm(coef, axis=0).sum()
    return C * data + alpha * groups + 0.5 * (1 - alpha) * np.sum(coef**2)


def optimality_residual(model, X, y, C, alpha, weight=None):
    """The largest violation of the optimality conditions, from ``predict_proba`` alone.

    With ``G = C (P - Y)^T diag(s) X + (1 - alpha) W``: a kept feature has
    ``G_j + alpha W_j / ||W_j|| = 0``, a dropped one ``||G_j|| <= alpha``,
    and the intercepts ``C (P - Y)^T s = 0``. Divided by ``C sum(s)``, the
    normalisation ``tol`` is measured in.
    """
    weight = np.ones(len(y)) if weight is None else weight
    P = model.predict_proba(X)
    R = C * weight[:, None] * (P - np.eye(len(model.classes_))[np.searchsorted(model.classes_, y)])
    coef = model.coef_
    G = R.T @ X + (1 - alpha) * coef
    norms = np.linalg.norm(coef, axis=0)
    kept = norms > 0
    residual = [
        np.abs(G[:, kept] + alpha * coef[:, kept] / norms[kept]).max(initial=0.0),
        max(0.0, np.linalg.norm(G[:, ~kept], axis=0).max(initial=0.0) - alpha),
        np.abs(R.sum(axis=0)).max(),
    ]
    return max(residual) / (C * weight.sum())


@pytest.mark.parametrize(
    ("loader", "C"),
    [(load_wine, 0.1), (load_wine, 1.0), (load_digits, 0.1), (load_digits, 1.0)],
    ids=["wine-C0.1", "wine-C1", "digits-C0.1", "digits-C1"],
)
def test_the_group_lasso_reaches_cyanures_optimum_with_the_same_features(loader, C):
    cyanure = pytest.importorskip("cyanure.estimators")
    X, y = standardised(loader)
    model = MultinomialLogitClassifier(C=C, l1_ratio=1.0, l1_groups="feature", tol=1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(X, y)
    theirs = cyanure.Classifier(
        loss="multiclass-logistic",
        penalty="l1l2",
        lambda_1=1.0 / (C * len(y)),
        fit_intercept=True,
        tol=1e-12,
        max_iter=1000,
        multi_class="multinomial",
        verbose=False,
        n_threads=1,
    )
    # cyanure sets OpenMP's thread count for the process (n_threads=1):
    # threadpool_limits gives it back afterwards, as the benchmark does
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore")
        theirs.fit(X, y)
    their_coef = np.asarray(theirs.coef_)
    their_coef = their_coef if their_coef.shape == model.coef_.shape else their_coef.T
    their_intercept = np.asarray(theirs.intercept_).ravel()
    ours = objective(model.coef_, model.intercept_, X, y, C, 1.0)
    reference = objective(their_coef, their_intercept, X, y, C, 1.0)
    assert ours <= reference * (1 + 1e-8)
    dropped = np.linalg.norm(model.coef_, axis=0) == 0
    assert dropped.any() and not dropped.all()
    np.testing.assert_array_equal(dropped, np.linalg.norm(their_coef, axis=0) == 0)


@pytest.mark.parametrize("alpha", [1.0, 0.5, 0.1])
@pytest.mark.parametrize("loader", [load_wine, load_digits], ids=["wine", "digits"])
def test_the_optimality_conditions_hold_from_predict_proba(loader, alpha):
    X, y = standardised(loader)
    weight = np.random.default_rng(0).uniform(0.5, 2.0, size=len(y))
    C = 0.1
    model = MultinomialLogitClassifier(C=C, l1_ratio=alpha, l1_groups="feature", tol=1e-10)
    model.fit(X, y, sample_weight=weight)
    assert optimality_residual(model, X, y, C, alpha, weight) <= 1e-6
    # whole columns are zero or not: a feature is kept for every class or none
    zero = model.coef_ == 0
    np.testing.assert_array_equal(zero.any(axis=0), zero.all(axis=0))
    if alpha >= 0.5:  # at alpha = 0.1 wine keeps every feature at this C
        assert zero.all(axis=0).any()


def test_without_an_l1_part_the_groups_change_nothing():
    X, y = standardised(load_wine)
    plain = MultinomialLogitClassifier().fit(X, y)
    grouped = MultinomialLogitClassifier(l1_groups="feature").fit(X, y)
    np.testing.assert_array_equal(grouped.coef_, plain.coef_)


def test_features_drop_out_as_C_falls_along_the_cv_path():
    X, y = standardised(load_iris)
    cv = MultinomialLogitClassifierCV(
        Cs=[0.01, 0.03, 0.1, 1.0], l1_ratios=(1.0,), l1_groups="feature", cv=3, tol=1e-10
    )
    cv.fit(X, y)
    paths = cv.coefs_paths_[..., : X.shape[1]]  # (folds, 1, Cs, K, d)
    kept = np.linalg.norm(paths, axis=-2) > 0  # (folds, 1, Cs, d)
    assert kept.sum(axis=-1).min() < X.shape[1]
    # fewer features at smaller C, fold by fold
    assert np.all(np.diff(kept.sum(axis=-1), axis=-1) >= 0)
    assert optimality_residual(cv, X, y, cv.C_, 1.0) <= 1e-6


@pytest.mark.parametrize(
    ("params", "match"),
    [
        (dict(l1_groups="class"), "l1_groups must be None or 'feature'; got 'class'"),
        (dict(solver="lbfgs"), "l1_groups='feature' needs solver='auto'"),
        (dict(solver="newton-cholesky"), "l1_groups='feature' needs solver='auto'"),
        (dict(coef_bounds=(0.0, 1.0)), "coef_bounds with l1_groups='feature' is not supported"),
    ],
)
def test_unsupported_combinations_are_refused(params, match):
    X, y = standardised(load_wine)
    settings = dict(l1_ratio=0.5, l1_groups="feature") | params
    with pytest.raises(ValueError, match=match):
        MultinomialLogitClassifier(**settings).fit(X, y)
    with pytest.raises(ValueError, match=match):
        cv_settings = {("l1_ratios" if k == "l1_ratio" else k): v for k, v in settings.items()}
        cv_settings["l1_ratios"] = (cv_settings["l1_ratios"],)
        MultinomialLogitClassifierCV(Cs=[1.0], cv=2, **cv_settings).fit(X, y)


def test_the_optimality_conditions_hold_on_raw_features():
    # raw wine (proline in the thousands): the groups' weights follow the
    # solvers' rescaling of the features, the penalty stays on the user's W
    X, y = load_wine(return_X_y=True)
    model = MultinomialLogitClassifier(C=0.01, l1_ratio=1.0, l1_groups="feature", tol=1e-10)
    model.fit(X, y)
    assert optimality_residual(model, X, y, 0.01, 1.0) <= 1e-6
    assert (np.linalg.norm(model.coef_, axis=0) == 0).any()


def test_a_group_lasso_whose_hessian_cannot_fit_is_refused_before_any_work(monkeypatch):
    # 2000 features, 50 classes: a 100 050-square Hessian, 240 GB
    import scipy.sparse as sp

    X = sp.random(60, 2000, density=0.01, format="csr", random_state=0)
    y = np.arange(60) % 50
    monkeypatch.setattr("skmultilogit._memory.available_memory", lambda: 8 * 2**30)
    with pytest.raises(ValueError, match=r"The group lasso .* forms the Hessian of the 100050"):
        MultinomialLogitClassifier(l1_ratio=1.0, l1_groups="feature").fit(X, y)


def test_hard_cases_converge_in_few_iterations():
    # raw wine at a tiny C: the last steps' decrease is below the objective's
    # rounding (a line search halved them to nothing, up to max_iter); and
    # features correlated at 0.9999, where block coordinate descent alone
    # needed thousands of sweeps and the outer iterations went linear
    X, y = load_wine(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = MultinomialLogitClassifier(C=1e-3, l1_ratio=0.5, l1_groups="feature", tol=1e-10)
        model.fit(X, y)
    assert model.n_iter_[0] <= 15
    assert optimality_residual(model, X, y, 1e-3, 0.5) <= 1e-6
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 1)) + 0.01 * rng.standard_normal((300, 20))
    y = (X @ rng.standard_normal(20) * 3 + rng.standard_normal(300) > 0).astype(int)
    y = y + 2 * (rng.random(300) > 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = MultinomialLogitClassifier(C=100.0, l1_ratio=1.0, l1_groups="feature", tol=1e-10)
        model.fit(X, y)
    assert model.n_iter_[0] <= 20
    assert optimality_residual(model, X, y, 100.0, 1.0) <= 1e-6


def test_float32_data_converge_or_stop_at_their_precision():
    # float32 products make F noisy at ~1e-7: a line search on it halved the
    # steps to nothing and accepted F unchanged, 100 identical iterations
    # up to max_iter; the steps' decrease is now judged at that rounding
    X, y = load_digits(return_X_y=True)
    settings = dict(C=1e-3, l1_ratio=1.0, l1_groups="feature", fit_intercept=False)
    reference = MultinomialLogitClassifier(**settings).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = MultinomialLogitClassifier(**settings).fit(X.astype(np.float32), y)
    assert model.n_iter_[0] <= 10
    # the float64 fit's coefficients to float32's resolution (6e-7 measured)
    scale = np.abs(reference.coef_).max()
    np.testing.assert_allclose(model.coef_, reference.coef_, rtol=0, atol=1e-5 * scale)
    np.testing.assert_array_equal(
        np.linalg.norm(model.coef_, axis=0) > 0, np.linalg.norm(reference.coef_, axis=0) > 0
    )
    # a tol below float32's resolution: a precision warning within a few
    # steps, not max_iter identical iterations
    with pytest.warns(Warning, match="float32 precision"):
        model = MultinomialLogitClassifier(**settings, tol=1e-13, max_iter=1000)
        model.fit(X.astype(np.float32), y)
    assert model.n_iter_[0] <= 20


def test_a_warm_start_on_a_feature_that_became_constant_drops_it():
    # an inert column has no curvature under the pure group lasso: zero is
    # its minimiser, where block coordinate descent used to leave it as it was
    X, y = standardised(load_wine)
    model = MultinomialLogitClassifier(C=1.0, l1_ratio=1.0, l1_groups="feature", warm_start=True)
    model.set_params(tol=1e-8).fit(X, y)
    assert np.linalg.norm(model.coef_[:, 6]) > 0
    X[:, 6] = 2.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(X, y)
    np.testing.assert_array_equal(model.coef_[:, 6], 0.0)
    assert optimality_residual(model, X, y, 1.0, 1.0) <= 1e-6


def test_the_default_tol_goes_on_to_the_optimum():
    # A smallest subgradient within tol (capped at a tenth of the L1
    # strength) left the objective 1e-4 of itself above its minimum on the
    # standardised wine at C = 1e4: on float64 X the fit goes on while its
    # model predicts a decrease of more than 1e-10 of the objective.
    X, y = standardised(load_wine)
    C = 1e4
    default = MultinomialLogitClassifier(C=C, l1_ratio=1.0, l1_groups="feature").fit(X, y)
    tight = MultinomialLogitClassifier(
        C=C, l1_ratio=1.0, l1_groups="feature", tol=1e-12, max_iter=1000
    ).fit(X, y)
    f_default = objective(default.coef_, default.intercept_, X, y, C, 1.0)
    f_tight = objective(tight.coef_, tight.intercept_, X, y, C, 1.0)
    assert f_default <= f_tight * (1 + 1e-10)
    assert optimality_residual(default, X, y, C, 1.0) < 1e-8
