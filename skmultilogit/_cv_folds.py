"""What the CV estimator hands its splitter and its scorer, and the scorer of held-out folds.

Metadata follow scikit-learn's routing (``sklearn.set_config(
enable_metadata_routing=True)``) as in ``LogisticRegressionCV``: the
splitter's ``split`` and the scorer's ``score`` get what they request of
``fit``'s ``sample_weight``, ``groups`` and other keyword arguments, and
``score``'s. Without routing, ``groups`` goes to the splitter and
``sample_weight`` to the scorer, as before routing existed.
"""

import inspect

import numpy as np
from sklearn.metrics import accuracy_score, check_scoring, get_scorer, log_loss, make_scorer
from sklearn.utils.metadata_routing import (
    MetadataRouter,
    MethodMapping,
    _routing_enabled,
    process_routing,
)
from sklearn.utils.validation import _check_method_params

from ._array_api import input_namespace, to_host, to_namespace, to_numpy
from ._classifier import MultinomialLogitClassifier
from ._scoring import ON_THE_ROWS, neg_log_loss


def routing_scorer(scoring):
    """The scorer ``scoring`` names, as routing sees it (None is accuracy)."""
    return get_scorer("accuracy" if scoring is None else scoring)


def metadata_router(estimator):
    """``estimator.get_metadata_routing()``: its own requests, the splitter's and the scorer's."""
    # the owner by name: scikit-learn 1.6 prints it as given, later ones
    # take a name or an object
    return (
        MetadataRouter(owner=type(estimator).__name__)
        .add_self_request(estimator)
        .add(
            # as given, not through check_cv, which would use up a generator
            splitter=estimator.cv,
            method_mapping=MethodMapping().add(caller="fit", callee="split"),
        )
        .add(
            scorer=routing_scorer(estimator.scoring),
            method_mapping=MethodMapping()
            .add(caller="fit", callee="score")
            .add(caller="score", callee="score"),
        )
    )


def routed_fit_params(estimator, sample_weight, groups, params):
    """``(split_params, score_params)``: what ``fit``'s metadata give the splitter and scorer.

    Each a dict of full-length values; the scorer's are taken to a fold's
    held-out rows by :func:`held_out_params`.
    """
    if _routing_enabled():
        if groups is not None:
            params = {**params, "groups": groups}
        routed = process_routing(estimator, "fit", sample_weight=sample_weight, **params)
        return dict(routed.splitter.split), dict(routed.scorer.score)
    split_params = {} if groups is None else {"groups": groups}
    score_params = {} if sample_weight is None else {"sample_weight": sample_weight}
    return split_params, score_params


def rows_scoring(scoring):
    """``'neg_log_loss'`` or ``'accuracy'`` if ``scoring`` is one of them, else None.

    By name (None is accuracy) or as scikit-learn's scorer of either
    (``get_scorer``), which can carry a metadata request: the scores a fit
    on Dask arrays computes where the rows live.
    """
    if isinstance(scoring, str) or scoring is None:
        return ("accuracy" if scoring is None else scoring) if scoring in ON_THE_ROWS else None
    if getattr(scoring, "_kwargs", None):
        return None
    function, sign = getattr(scoring, "_score_func", None), getattr(scoring, "_sign", None)
    response = getattr(scoring, "_response_method", None)
    if function is log_loss and sign == -1 and response == "predict_proba":
        return "neg_log_loss"
    if function is accuracy_score and sign == 1 and response == "predict":
        return "accuracy"
    return None


def scoring_on_the_rows(scoring, score_params, sample_weight):
    """``(name, weighted)`` of the held-out score a Dask fit computes where the rows live.

    ``name`` from :func:`rows_scoring`; ``weighted`` whether the scorer gets
    the fit's ``sample_weight`` (``score_params``, routed by
    :func:`routed_fit_params`). Raises ValueError for any other scoring or
    metadata: only the fit's weights live beside the rows.
    """
    name = rows_scoring(scoring)
    if name is None:
        raise ValueError(
            f"scoring={scoring!r} on Dask arrays: the held-out scores are computed where "
            "the rows live, for 'neg_log_loss' and 'accuracy' (or None, or scikit-learn's "
            "scorer of either); use one of them, or fit on data in memory."
        )
    score_weight = score_params.get("sample_weight")
    if set(score_params) - {"sample_weight"} or not (
        score_weight is None or score_weight is sample_weight
    ):
        raise ValueError(
            "On Dask arrays the held-out scores can be weighted by fit's sample_weight "
            f"only; the scorer was routed {sorted(score_params)}."
        )
    return name, score_weight is not None


def routed_score_params(estimator, sample_weight, params):
    """What ``score``'s metadata give the scorer."""
    if sample_weight is not None:
        params = {**params, "sample_weight": sample_weight}
    if _routing_enabled():
        return dict(process_routing(estimator, "score", **params).scorer.score)
    return params


def held_out_params(n_samples, params, test):
    """The scorer's metadata for a fold's held-out rows (per-row arrays indexed by ``test``)."""
    # the rows themselves are not needed, only their number
    return _check_method_params(np.empty((n_samples, 0)), params, indices=test)


def check_cv_scoring(scoring):
    """Raise for a ``scoring`` that cannot choose C, before any fold is fitted.

    One score chooses C: ``check_scoring`` also takes several metrics (a
    list or a dict), which failed only once the first fold's path was fitted.
    """
    if not (scoring is None or isinstance(scoring, str) or callable(scoring)):
        raise TypeError(
            "scoring must be a str, a callable or None (one score chooses C); got "
            f"{type(scoring).__name__} {scoring!r}."
        )
    check_scoring(MultinomialLogitClassifier(), scoring=scoring)


def check_fold_indices(folds, n_samples):
    """The ``(train, test)`` folds as arrays; ValueError where they do not index the rows.

    A splitter of one's own (``cv`` an iterable of ``(train, test)``) may
    hand out positions past the end or floats: numpy's IndexError from deep
    in a fit said neither which fold nor what was wrong. Positions are
    numpy's, ``-n`` to ``n - 1`` (returned as ``0`` to ``n - 1``); a boolean
    mask of the n rows is a fold too (returned as its positions); an empty
    part becomes an empty array of positions (whose fit or score then says
    it has no rows). No folds at all (``cv=[]``) is a ValueError too.
    """
    checked = []
    for number, fold in enumerate(folds):
        parts = []
        for part, rows in zip(("training", "held-out"), fold, strict=True):
            rows = np.asarray(rows)
            if rows.size == 0:
                rows = np.zeros(0, dtype=np.intp)
            elif rows.dtype == bool and rows.shape == (n_samples,):
                rows = np.flatnonzero(rows)  # the Dask path takes positions only
            elif rows.ndim != 1 or rows.dtype.kind not in "iu":
                raise ValueError(
                    f"Cross-validation fold {number}: the {part} rows must be a 1-d array of "
                    f"integer positions or a boolean mask of length {n_samples}; got an "
                    f"array of dtype {rows.dtype} and shape {rows.shape}."
                )
            elif not (rows.min() >= -n_samples and rows.max() < n_samples):
                raise ValueError(
                    f"Cross-validation fold {number}: the {part} rows hold positions outside "
                    f"-{n_samples}..{n_samples - 1} (from {rows.min()} to {rows.max()})."
                )
            else:
                rows = np.where(rows < 0, rows + n_samples, rows)  # the Dask path's too
            parts.append(rows)
        checked.append(tuple(parts))
    if not checked:
        raise ValueError("Cross-validation gave no folds: cv must yield (train, test) pairs.")
    return checked


def check_fold_weights(folds, fit_weight, score_weight):
    """Raise ValueError for a fold with nothing to fit or nothing to score.

    ``fit_weight`` is each row's weight in the fits (sample times class
    weight), ``score_weight`` the scorer's ``sample_weight`` (None if it
    gets none).
    """
    for number, (train, _) in enumerate(folds):
        if not fit_weight[train].sum() > 0:
            raise ValueError(
                f"Cross-validation fold {number}: the training rows' weights (sample_weight "
                "times class_weight) sum to 0, so there is nothing to fit. Choose folds that "
                "keep rows of positive weight in every training part."
            )
    for number, (_, test) in enumerate(folds):
        if score_weight is not None and not np.sum(score_weight[test]) > 0:
            raise ValueError(
                f"Cross-validation fold {number}: the held-out rows' sample_weight sums to "
                "0, so the weighted score is undefined. Choose folds that keep rows of "
                "positive weight in every held-out part."
            )


def scoring_view(classes, coef, intercept, fit_intercept, namespace=None):
    """A fitted MultinomialLogitClassifier holding given coefficients, for a scorer.

    ``namespace``: ``(xp, device)`` of array-API data, where the coefficients
    then live. ``classes_`` stays numpy: scikit-learn's scorers read a binary
    classifier's classes on the host (``classes_.tolist()``,
    ``np.flatnonzero(classes_ == pos_label)``), which an array on a GPU refuses.
    """
    model = MultinomialLogitClassifier(fit_intercept=fit_intercept)
    if namespace is not None:
        coef, intercept = to_namespace((coef, intercept), *namespace)
    model.classes_ = classes
    model.coef_ = coef
    model.intercept_ = intercept
    model.n_features_in_ = coef.shape[1]
    return model


def fold_scorer(scoring, classes):
    """The scorer for held-out folds, told every class when its metric takes ``labels``.

    A test fold can lack a class; metrics such as ``log_loss`` or
    ``brier_score_loss`` then fail unless given ``labels=classes``.
    LogisticRegressionCV rebuilds such scorers the same way (from the
    scorer's private attributes, present since scikit-learn 1.4); any other
    scorer is used as it is.
    """
    scorer = check_scoring(MultinomialLogitClassifier(), scoring=scoring)
    score_func = getattr(scorer, "_score_func", None)
    response_method = getattr(scorer, "_response_method", None)
    if score_func is None or response_method is None:
        return scorer
    parameters = inspect.signature(score_func).parameters
    if "labels" not in parameters:
        return scorer
    kwargs = {"labels": classes}
    if classes.shape[0] == 2 and "pos_label" in parameters:
        kwargs["pos_label"] = classes[-1]
    kwargs.update(getattr(scorer, "_kwargs", {}))
    return make_scorer(
        score_func,
        greater_is_better=getattr(scorer, "_sign", 1) == 1,
        response_method=response_method,
        **kwargs,
    )


def device_neg_log_loss(estimator, X, y, sample_weight):
    """The ``neg_log_loss`` score of a model fitted on array-API data, computed on the host.

    scikit-learn's log-loss scorer indexes ``classes_`` with numpy, which an
    array on another device refuses: the n x K probabilities come over.
    """
    namespace = input_namespace(estimator.coef_)
    proba = to_numpy(estimator.predict_proba(X), namespace[0])
    classes, y, sample_weight = (to_host(array) for array in (estimator.classes_, y, sample_weight))
    y = np.asarray(y)
    unknown = np.setdiff1d(y, classes)
    if unknown.size:
        raise ValueError(
            f"y contains labels the model was not fitted on: {unknown[:5].tolist()}; "
            "the log-loss needs a probability for each."
        )
    labels = np.searchsorted(classes, y)
    weight = None if sample_weight is None else np.asarray(sample_weight, dtype=float)
    return neg_log_loss(proba, labels, weight)
