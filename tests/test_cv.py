"""MultinomialLogitClassifierCV against LogisticRegressionCV and against cold fits."""

import warnings

import numpy as np
import pytest
import sklearn
from scipy.special import softmax as scipy_softmax
from sklearn.datasets import load_iris, load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegressionCV
from sklearn.metrics import accuracy_score, get_scorer, log_loss
from sklearn.model_selection import GroupKFold, StratifiedKFold
from sklearn.preprocessing import StandardScaler

from skmultilogit import MultinomialLogitClassifier, MultinomialLogitClassifierCV

TIGHT = dict(tol=1e-10, max_iter=20000)
SKLEARN_VERSION = tuple(int(part) for part in sklearn.__version__.split(".")[:2])
SKLEARN_18 = SKLEARN_VERSION >= (1, 8)


def standardised(loader):
    X, y = loader(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def reference_cv(X, y, Cs, folds, sample_weight=None, refit=True, scoring="neg_log_loss"):
    """LogisticRegressionCV (lbfgs, multinomial) run to a tight tol on the same folds."""
    legacy = {"use_legacy_attributes": False} if SKLEARN_18 else {}
    model = LogisticRegressionCV(
        Cs=Cs, cv=folds, scoring=scoring, refit=refit, tol=1e-12, max_iter=20000, **legacy
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # l1_ratios' default changes in 1.10
        return model.fit(X, y, sample_weight=sample_weight)


def reference_paths(model, n_folds, n_cs):
    """(n_folds, n_cs, n_classes, n_dof) coefficient paths in either attribute layout."""
    if isinstance(model.coefs_paths_, dict):
        return np.stack(list(model.coefs_paths_.values()), axis=2).reshape(n_folds, n_cs, 3, -1)
    return model.coefs_paths_[:, 0]


def fold_objective(path, X, y, C, sample_weight):
    """C * sum_i s_i (-log P[i, y_i]) + 1/2 ||W||^2, written out independently."""
    raw = X @ path[:, :-1].T + path[:, -1]
    raw -= raw.max(axis=1, keepdims=True)
    nll = np.log(np.exp(raw).sum(axis=1)) - raw[np.arange(len(y)), y]
    return C * sample_weight @ nll + 0.5 * (path[:, :-1] ** 2).sum()


def reference_scores(model):
    """(n_folds, n_cs) scores in either attribute layout."""
    if isinstance(model.scores_, dict):
        return next(iter(model.scores_.values()))
    return model.scores_[:, 0, :]


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("refit", [True, False])
def test_same_choice_and_model_as_logistic_regression_cv(weighted, refit):
    X, y = standardised(load_wine)
    Cs = np.logspace(-3, 2, 6)
    folds = list(StratifiedKFold(4, shuffle=True, random_state=0).split(X, y))
    weight = np.random.default_rng(0).integers(1, 4, size=len(y)) if weighted else None
    reference = reference_cv(X, y, Cs, folds, weight, refit)
    ours = MultinomialLogitClassifierCV(Cs=Cs, cv=folds, refit=refit, **TIGHT)
    ours.fit(X, y, sample_weight=weight)
    assert ours.C_ == pytest.approx(float(np.ravel(reference.C_)[0]), rel=1e-12)
    # Every fit of every path is at least as low as the reference's (its
    # L-BFGS stops up to 1e-11 above, relative, at C = 100). Held-out scores
    # move to first order with the coefficients, the objective to second:
    # they agree to a few 1e-6.
    sample_weight = np.ones(len(y)) if weight is None else weight
    paths = reference_paths(reference, len(folds), len(Cs))
    for f, (train, _) in enumerate(folds):
        for c, C in enumerate(Cs):
            args = (X[train], y[train], C, sample_weight[train])
            f_ours = fold_objective(ours.coefs_paths_[f, 0, c], *args)
            assert f_ours <= fold_objective(paths[f, c], *args) * (1 + 1e-13)
    np.testing.assert_allclose(ours.scores_[:, 0, :], reference_scores(reference), rtol=3e-5)
    # Without refit the model is the mean of the fold fits, and carries the
    # reference's stopping error in them (1.03e-6 with scikit-learn 1.6).
    atol = 1e-6 if refit else 1e-5
    np.testing.assert_allclose(ours.predict_proba(X), reference.predict_proba(X), atol=atol)
    np.testing.assert_allclose(ours.coef_, reference.coef_, atol=10 * atol)
    assert ours.Cs_.tolist() == Cs.tolist()
    assert ours.coefs_paths_.shape == (4, 1, 6, 3, X.shape[1] + 1)
    assert ours.n_iter_.shape == ours.scores_.shape == (4, 1, 6)


def test_each_path_point_is_the_cold_optimum_on_its_fold():
    # Warm starts change where each fit begins, never where it ends.
    X, y = standardised(load_iris)
    Cs = [10.0, 0.01, 1.0, 0.1]  # any order; the path runs sorted
    folds = list(StratifiedKFold(3, shuffle=True, random_state=1).split(X, y))
    cv = MultinomialLogitClassifierCV(Cs=Cs, l1_ratios=(0.0, 0.6), cv=folds, **TIGHT).fit(X, y)
    for f, (train, _) in enumerate(folds):
        for r, l1_ratio in enumerate((0.0, 0.6)):
            for c, C in enumerate(Cs):
                cold = MultinomialLogitClassifier(C=C, l1_ratio=l1_ratio, **TIGHT)
                cold.fit(X[train], y[train])
                path = cv.coefs_paths_[f, r, c]
                np.testing.assert_allclose(path[:, :-1], cold.coef_, atol=1e-6)
                np.testing.assert_allclose(path[:, -1], cold.intercept_, atol=1e-6)


def test_warm_starts_save_iterations():
    X, y = standardised(load_wine)
    Cs = np.logspace(-2, 2, 8)
    folds = list(StratifiedKFold(3).split(X, y))
    cv = MultinomialLogitClassifierCV(Cs=Cs, cv=folds, solver="lbfgs").fit(X, y)
    cold = [
        MultinomialLogitClassifier(C=C, solver="lbfgs").fit(X[folds[0][0]], y[folds[0][0]])
        for C in Cs
    ]
    assert cv.n_iter_[0, 0].sum() < sum(model.n_iter_[0] for model in cold)


def test_elastic_net_grid_chooses_by_summed_score():
    X, y = standardised(load_wine)
    l1_ratios = (0.0, 0.5, 1.0)
    cv = MultinomialLogitClassifierCV(Cs=4, l1_ratios=l1_ratios, cv=3, **TIGHT).fit(X, y)
    total = cv.scores_.sum(axis=0).T  # (C, l1_ratio): ties go to the earlier C
    best_c, best_l1 = np.unravel_index(np.argmax(total), total.shape)
    assert cv.l1_ratio_ == l1_ratios[best_l1] and cv.C_ == cv.Cs_[best_c]
    cold = MultinomialLogitClassifier(C=cv.C_, l1_ratio=cv.l1_ratio_, **TIGHT).fit(X, y)
    np.testing.assert_allclose(cv.coef_, cold.coef_, atol=1e-5)
    np.testing.assert_array_equal(cv.l1_ratios_, l1_ratios)


def test_parallel_folds_give_the_serial_result():
    X, y = standardised(load_wine)
    serial = MultinomialLogitClassifierCV(Cs=5, cv=4).fit(X, y)
    parallel = MultinomialLogitClassifierCV(Cs=5, cv=4, n_jobs=2).fit(X, y)
    np.testing.assert_allclose(parallel.coefs_paths_, serial.coefs_paths_, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(parallel.coef_, serial.coef_)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_direct_log_loss_equals_the_scorer(weighted):
    # "neg_log_loss" is computed without the scorer; a scorer object takes
    # the general route.
    X, y = standardised(load_wine)
    weight = np.random.default_rng(0).integers(1, 4, size=len(y)) if weighted else None
    direct = MultinomialLogitClassifierCV(Cs=4, cv=3).fit(X, y, sample_weight=weight)
    scorer = get_scorer("neg_log_loss")
    general = MultinomialLogitClassifierCV(Cs=4, cv=3, scoring=scorer)
    general.fit(X, y, sample_weight=weight)
    np.testing.assert_allclose(direct.scores_, general.scores_, rtol=1e-13)


def test_score_uses_the_scoring():
    X, y = standardised(load_iris)
    by_log_loss = MultinomialLogitClassifierCV(Cs=3, cv=3).fit(X, y)
    assert by_log_loss.score(X, y) == pytest.approx(-log_loss(y, by_log_loss.predict_proba(X)))
    by_accuracy = MultinomialLogitClassifierCV(Cs=3, cv=3, scoring=None).fit(X, y)
    assert by_accuracy.score(X, y) == accuracy_score(y, by_accuracy.predict(X))


def test_unconverged_fits_give_one_warning_with_a_count():
    X, y = standardised(load_wine)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        MultinomialLogitClassifierCV(Cs=3, cv=2, max_iter=1, solver="lbfgs", refit=False).fit(X, y)
    messages = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert len(messages) == 1
    assert "of 6 cross-validation fits did not converge" in messages[0]
    assert "Increase max_iter" in messages[0]


def test_string_labels_and_class_weight():
    X, y = standardised(load_iris)
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    cv = MultinomialLogitClassifierCV(Cs=3, cv=3, class_weight="balanced").fit(X, labels)
    assert set(cv.predict(X)) <= set(labels)
    np.testing.assert_array_equal(cv.classes_, labels[np.sort(np.unique(y, return_index=True)[1])])


@pytest.mark.parametrize(
    "params, error, match",
    [
        ({"Cs": 0}, ValueError, "Cs must be >= 1"),
        ({"Cs": []}, ValueError, "Cs must not be empty"),
        ({"Cs": [1.0, -2.0]}, ValueError, r"Cs\[1\] must be > 0"),
        ({"Cs": "many"}, TypeError, "Cs must be an int or a sequence"),
        ({"l1_ratios": (0.0, 2.0)}, ValueError, r"l1_ratios\[1\] must be in \[0, 1\]"),
        ({"l1_ratios": ()}, ValueError, "l1_ratios must not be empty"),
        ({"l1_ratios": 0.5}, TypeError, "l1_ratios must be a sequence"),
        (
            {"l1_ratios": (0.0, 0.5), "solver": "newton-cholesky"},
            ValueError,
            r"l1_ratios\[1\]=0.5 needs solver='lbfgs' or 'auto'",
        ),
        ({"solver": "sag"}, ValueError, "solver must be one of"),
        ({"refit": "yes"}, TypeError, "refit must be True or False"),
        # several metrics: check_scoring takes them, and the fold fits ran
        # before a score came back a dict
        ({"scoring": {"a": "accuracy"}}, TypeError, "scoring must be a str, a callable or None"),
        ({"scoring": ["accuracy"]}, TypeError, "scoring must be a str, a callable or None"),
    ],
)
def test_invalid_parameters(params, error, match):
    X, y = standardised(load_iris)
    with pytest.raises(error, match=match):
        MultinomialLogitClassifierCV(**params).fit(X, y)


def test_ties_are_broken_as_logistic_regression_cv_breaks_them(monkeypatch):
    # LogisticRegressionCV takes the first maximum in (C, l1_ratio) order: the
    # earlier C wins, then the earlier l1_ratio. Two pairs tie here.
    import skmultilogit._cv as cv_module

    def tied_path(data, y, classes, metadata, fold, Cs, l1_ratio, scoring, params, task):
        coefs = np.zeros((len(Cs), len(classes), data.n_features + 1))
        coefs[:, :, 0] = np.arange(len(Cs))[:, None] + 10 * l1_ratio  # to tell them apart
        scores = {0.0: [0.0, -1.0, 2.0], 1.0: [0.0, 2.0, -1.0]}[l1_ratio]
        return coefs, np.ones(len(Cs), dtype=np.int32), np.array(scores), []

    monkeypatch.setattr(cv_module, "_fold_path", tied_path)
    X, y = standardised(load_iris)
    for refit in (True, False):
        cv = MultinomialLogitClassifierCV(
            Cs=[0.1, 1.0, 10.0], l1_ratios=(0.0, 1.0), cv=2, refit=refit, max_iter=1
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            cv.fit(X, y)
        # (C=1, l1=1) comes before (C=10, l1=0) in (C, l1_ratio) order
        assert (cv.C_, cv.l1_ratio_) == (1.0, 1.0)


def test_scorers_that_take_labels_work_on_folds_missing_a_class():
    X, y = standardised(load_iris)
    without_2 = np.flatnonzero(y != 2)
    test = without_2[::3]
    train = np.setdiff1d(np.arange(len(y)), test)
    folds = [(train, test), (test, train)]  # the first test part has no class 2
    direct = MultinomialLogitClassifierCV(Cs=3, cv=folds).fit(X, y)
    through_scorer = MultinomialLogitClassifierCV(
        Cs=3, cv=folds, scoring=get_scorer("neg_log_loss")
    ).fit(X, y)
    np.testing.assert_allclose(through_scorer.scores_, direct.scores_, rtol=1e-13)
    if SKLEARN_VERSION >= (1, 7):  # multiclass brier_score_loss
        brier = MultinomialLogitClassifierCV(Cs=3, cv=folds, scoring="neg_brier_score")
        brier.fit(X, y)
        # each held-out score recomputed here from its coefficients, all classes named
        from sklearn.metrics import brier_score_loss

        for f, (_, test_rows) in enumerate(folds):
            for c, path_coef in enumerate(brier.coefs_paths_[f, 0]):
                logits = X[test_rows] @ path_coef[:, :-1].T + path_coef[:, -1]
                expected = -brier_score_loss(
                    y[test_rows], scipy_softmax(logits, axis=1), labels=brier.classes_
                )
                assert brier.scores_[f, 0, c] == pytest.approx(expected, rel=1e-12)


def test_groups_reach_a_group_splitter():
    X, y = standardised(load_wine)
    groups = np.arange(len(y)) % 4
    by_groups = MultinomialLogitClassifierCV(Cs=3, cv=GroupKFold(4)).fit(X, y, groups=groups)
    explicit = list(GroupKFold(4).split(X, y, groups))
    by_splits = MultinomialLogitClassifierCV(Cs=3, cv=explicit).fit(X, y)
    np.testing.assert_array_equal(by_groups.scores_, by_splits.scores_)


def test_a_splitter_that_reads_x_gets_the_rows():
    # blocked or spatial splitters read X's values, not only its length
    class FirstColumnHalves:
        def split(self, X, y=None, groups=None):
            order = np.argsort(np.asarray(X)[:, 0], kind="stable")
            half = len(order) // 2
            yield order[:half], order[half:]
            yield order[half:], order[:half]

        def get_n_splits(self, X=None, y=None, groups=None):
            return 2

    X, y = load_iris(return_X_y=True)
    cv = MultinomialLogitClassifierCV(Cs=[0.1, 1.0], cv=FirstColumnHalves()).fit(X, y)
    order = np.argsort(X[:, 0], kind="stable")
    first = MultinomialLogitClassifier(C=0.1, tol=cv.tol).fit(X[order[:75]], y[order[:75]])
    np.testing.assert_allclose(cv.coefs_paths_[0, 0, 0][:, :4], first.coef_, atol=1e-6)


@pytest.fixture
def metadata_routing():
    with sklearn.config_context(enable_metadata_routing=True):
        yield


@pytest.mark.parametrize("request_weight", [False, True])
def test_routing_gives_the_scorer_the_weights_it_requests(metadata_routing, request_weight):
    # LogisticRegressionCV on the same folds: the fits are weighted either
    # way, the held-out scores only if the scorer asks for the weights
    X, y = standardised(load_wine)
    Cs = np.logspace(-2, 1, 4)
    folds = list(StratifiedKFold(4, shuffle=True, random_state=0).split(X, y))
    weight = np.random.default_rng(0).uniform(0.2, 3.0, size=len(y))
    scorer = get_scorer("neg_log_loss").set_score_request(sample_weight=request_weight)
    reference = reference_cv(X, y, Cs, folds, weight, scoring=scorer)
    ours = MultinomialLogitClassifierCV(Cs=Cs, cv=folds, scoring=scorer, **TIGHT)
    ours.fit(X, y, sample_weight=weight)
    np.testing.assert_allclose(ours.scores_[:, 0, :], reference_scores(reference), rtol=3e-5)
    # score() routes the same way: weights the scorer declined are not used
    # (LogisticRegressionCV 1.6 does the same; 1.9 raises a TypeError)
    expected = -log_loss(y, ours.predict_proba(X), sample_weight=weight if request_weight else None)
    assert ours.score(X, y, sample_weight=weight) == pytest.approx(expected, rel=1e-12)


def test_weights_a_scorer_was_not_asked_about_as_logistic_regression_cv(metadata_routing):
    # refused with scikit-learn 1.9 (UnsetMetadataPassedError), used with 1.6
    X, y = standardised(load_iris)
    weight = np.ones(len(y))

    def outcome(model):
        try:
            model.fit(X, y, sample_weight=weight)
        except Exception as error:  # noqa: BLE001 - the type is what is compared
            return type(error)
        return None

    ours = outcome(MultinomialLogitClassifierCV(Cs=2))
    assert ours == outcome(LogisticRegressionCV(Cs=2, max_iter=1000))
    if SKLEARN_VERSION >= (1, 9):
        assert ours is not None and ours.__name__ == "UnsetMetadataPassedError"


def test_routing_gives_the_splitter_its_groups(metadata_routing):
    X, y = standardised(load_wine)
    groups = np.arange(len(y)) % 8
    explicit = MultinomialLogitClassifierCV(Cs=3, cv=list(GroupKFold(4).split(X, y, groups)))
    explicit.fit(X, y)
    routed = MultinomialLogitClassifierCV(Cs=3, cv=GroupKFold(4)).fit(X, y, groups=groups)
    np.testing.assert_array_equal(routed.scores_, explicit.scores_)
    # a generator of splits is used once (routing reads cv, and must not use it up)
    generator = GroupKFold(4).split(X, y, groups)
    routed = MultinomialLogitClassifierCV(Cs=3, cv=generator).fit(X, y)
    np.testing.assert_array_equal(routed.scores_, explicit.scores_)
    # an outer search routes groups to the inner splitter, as it does for
    # LogisticRegressionCV (fit's groups are not a request of the estimator's
    # own: an unset one was refused)
    from sklearn.model_selection import GridSearchCV

    inner = MultinomialLogitClassifierCV(Cs=3, cv=GroupKFold(3))
    search = GridSearchCV(inner, {"fit_intercept": [True]}, cv=GroupKFold(2)).fit(
        X, y, groups=groups
    )
    train, test = next(GroupKFold(2).split(X, y, groups))
    expected = MultinomialLogitClassifierCV(Cs=3, cv=GroupKFold(3))
    expected.fit(X[train], y[train], groups=groups[train])
    assert search.cv_results_["split0_test_score"][0] == pytest.approx(
        expected.score(X[test], y[test]), rel=1e-12
    )


def test_other_metadata_need_routing():
    X, y = standardised(load_iris)
    with pytest.raises(ValueError, match="enable_metadata_routing=True"):
        MultinomialLogitClassifierCV(Cs=2).fit(X, y, extra=np.ones(len(y)))


@pytest.mark.parametrize("part", ["training", "held-out"])
def test_a_fold_of_zero_weight_is_refused_by_name(part):
    X, y = standardised(load_wine)
    folds = list(StratifiedKFold(3).split(X, y))
    weight = np.ones(len(y))
    train, test = folds[1]
    if part == "training":
        weight[train] = 0.0
    else:
        weight[test] = 0.0
    with pytest.raises(ValueError, match=f"fold 1: the {part} rows"):
        MultinomialLogitClassifierCV(Cs=2, cv=folds).fit(X, y, sample_weight=weight)


def test_an_outer_search_scores_with_the_weights_the_estimator_asks_for(metadata_routing):
    # GridSearchCV scores the CV estimator through its score(): with
    # set_score_request(sample_weight=True) the weighted score on scikit-learn
    # 1.6 and 1.9 alike (1.6 dropped the weights silently while score's
    # request was declared unused), without it an error, never unweighted
    from sklearn.exceptions import UnsetMetadataPassedError
    from sklearn.model_selection import GridSearchCV, KFold

    X, y = standardised(load_wine)
    weight = np.random.default_rng(0).uniform(0.2, 3.0, size=len(y))
    scorer = get_scorer("neg_log_loss").set_score_request(sample_weight=True)
    outer = KFold(3, shuffle=True, random_state=0)
    model = MultinomialLogitClassifierCV(Cs=[0.1, 1.0], cv=3, scoring=scorer)
    model.set_fit_request(sample_weight=True)
    with pytest.raises(UnsetMetadataPassedError, match="score"):
        GridSearchCV(model, {"fit_intercept": [True]}, cv=outer).fit(X, y, sample_weight=weight)
    model.set_score_request(sample_weight=True)
    search = GridSearchCV(model, {"fit_intercept": [True]}, cv=outer).fit(
        X, y, sample_weight=weight
    )
    train, test = next(outer.split(X))
    fitted = MultinomialLogitClassifierCV(Cs=[0.1, 1.0], cv=3, scoring=scorer)
    fitted.fit(X[train], y[train], sample_weight=weight[train])
    expected = -log_loss(y[test], fitted.predict_proba(X[test]), sample_weight=weight[test])
    assert search.cv_results_["split0_test_score"][0] == pytest.approx(expected, rel=1e-12)


def test_dask_scores_are_named_or_scikit_learns_own_scorers():
    # the held-out scores a Dask fit sums where the rows live: a scorer that
    # computes something else (log-loss of predicted labels, accuracy of
    # probabilities, extra arguments) is not one of them
    from sklearn.metrics import accuracy_score, make_scorer

    from skmultilogit._cv_folds import rows_scoring

    assert rows_scoring(None) == rows_scoring("accuracy") == "accuracy"
    assert rows_scoring(get_scorer("neg_log_loss")) == "neg_log_loss"
    assert rows_scoring(get_scorer("accuracy")) == "accuracy"
    assert rows_scoring(make_scorer(log_loss, greater_is_better=False)) is None
    assert rows_scoring(make_scorer(accuracy_score, response_method="predict_proba")) is None
    assert rows_scoring(make_scorer(log_loss, greater_is_better=False, eps=1e-3)) is None
    assert rows_scoring("f1_macro") is None


@pytest.mark.parametrize(
    "make_folds, match",
    [
        (lambda n: [(np.arange(n - 10), np.arange(n - 5, n + 5))], r"held-out rows hold positions"),
        (lambda n: [(np.arange(-n - 1, -n // 2), np.arange(n // 2, n))], r"training rows hold"),
        (lambda n: [(np.arange(n // 2, dtype=float), np.arange(n // 2, n))], "integer positions"),
        (lambda n: [(np.arange(n // 2)[:, None], np.arange(n // 2, n))], "integer positions"),
    ],
)
def test_folds_of_ones_own_must_index_the_rows(make_folds, match):
    # numpy's IndexError came from deep inside a fold's fit before
    X, y = standardised(load_iris)
    with pytest.raises(ValueError, match=f"Cross-validation fold 0: .*{match}"):
        MultinomialLogitClassifierCV(Cs=2, cv=make_folds(len(y))).fit(X, y)
    # boolean masks of the rows are folds too
    shuffled = np.random.default_rng(0).permutation(len(y))
    mask = np.zeros(len(y), dtype=bool)
    mask[shuffled[: len(y) // 2]] = True
    by_mask = MultinomialLogitClassifierCV(Cs=2, cv=[(mask, ~mask)]).fit(X, y)
    by_index = MultinomialLogitClassifierCV(
        Cs=2, cv=[(np.flatnonzero(mask), np.flatnonzero(~mask))]
    ).fit(X, y)
    np.testing.assert_array_equal(by_mask.scores_, by_index.scores_)
    # and numpy's negative positions, and lists, are positions too
    negative = [(np.flatnonzero(mask) - len(y), list(np.flatnonzero(~mask)))]
    by_negative = MultinomialLogitClassifierCV(Cs=2, cv=negative).fit(X, y)
    np.testing.assert_array_equal(by_negative.scores_, by_index.scores_)


def test_a_cv_that_yields_no_folds_is_refused_by_name():
    # cv=[] failed unpacking the paths' results ("not enough values to unpack")
    X, y = standardised(load_iris)
    with pytest.raises(ValueError, match="Cross-validation gave no folds"):
        MultinomialLogitClassifierCV(Cs=2, cv=[]).fit(X, y)
