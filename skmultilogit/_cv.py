"""Choosing C (and l1_ratio) by cross-validation along warm-started paths."""

import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import check_scoring
from sklearn.model_selection import check_cv
from sklearn.utils import metadata_routing
from sklearn.utils.metadata_routing import _raise_for_params
from sklearn.utils.parallel import Parallel, delayed

from ._array_api import (
    input_namespace,
    labels_to_namespace,
    read_back,
    to_host,
    to_namespace,
    to_numpy,
)
from ._backends import is_dask_collection
from ._callbacks import (
    CALLBACK_MIXINS,
    NO_TASK,
    WRAPPER_FRAMES,
    FittedAttributes,
    Task,
    fit_hooks,
    fit_method,
)
from ._cv_folds import (
    check_cv_scoring,
    check_fold_indices,
    check_fold_weights,
    device_neg_log_loss,
    fold_scorer,
    held_out_params,
    metadata_router,
    routed_fit_params,
    routed_score_params,
    scoring_on_the_rows,
    scoring_view,
)
from ._objective import FittedObjective
from ._path import coefficient_path, fit_coefficients, within_box
from ._prediction import LinearPredictorMixin
from ._scoring import neg_log_loss
from ._validation import (
    check_bool,
    check_coef_bounds,
    check_Cs,
    check_l1_groups,
    check_l1_ratios,
    check_sample_weight,
    check_solver_params,
    prepare_training_data,
)


def _split_path_coef(path_coef, n_features, fit_intercept):
    """``(coef, intercept)`` from a ``coefs_paths_`` entry (intercept last; zeros without one)."""
    if fit_intercept:
        return path_coef[:, :n_features], path_coef[:, n_features]
    return path_coef[:, :n_features], np.zeros(path_coef.shape[0])


def _fold_path(data, y, classes, metadata, fold, Cs, l1_ratio, scoring, params, task):
    """One fold, one l1_ratio: the coefficient path on train and its scores on test.

    ``data`` is the backend of all the rows (numpy or array-API), ``y`` their
    labels; ``metadata`` is ``(sample_weight, score_params)``: the fit's
    weights as the user gave them (None for none), for callbacks, and the
    scorer's metadata for all rows (``_cv_folds``); ``fold`` is ``(train,
    test)``; ``task`` is the fold path's callback task (``_callbacks``), not
    begun.
    """
    (train, test), (sample_weight, score_params) = fold, metadata
    y_index = data.y
    train_data = data.rows(train)
    train_weight = None if sample_weight is None else sample_weight[train]
    # the path's tasks are a tree of their own (Task.on_data), in a thread or
    # a worker process where the fit's own context cannot see them
    with task.on_data(train_data.X, y[train], train_weight).running() as task:
        hooks = fit_hooks(task, params["max_iter"])
        coefs, n_iter, results = coefficient_path(
            train_data, Cs, l1_ratio=l1_ratio, fit_hooks=hooks, **params
        )
    n_features = data.n_features
    score_kwargs = held_out_params(data.n_samples, score_params, test)
    namespace = getattr(data, "namespace", None)
    # Labels on the host, for array-API data too: a metric's pos_label must
    # be a number or a string (a device scalar is refused), and the scoring
    # view's classes_ are numpy; the responses (probabilities, logits) stay
    # on the device and the metric brings the test labels (n numbers) there.
    scorer = None if scoring == "neg_log_loss" else fold_scorer(scoring, classes)
    # the test rows are sliced (copied) once, not once per C
    X_test, y_test, y_index_test = data.rows(test).X, y[test], y_index[test]
    scores = np.empty(len(Cs))
    for index, path_coef in enumerate(coefs):
        coef, intercept = _split_path_coef(path_coef, n_features, params["fit_intercept"])
        model = scoring_view(
            classes,
            coef.astype(data.dtype),
            intercept.astype(data.dtype),
            params["fit_intercept"],
            namespace,
        )
        if scorer is None:
            proba = model.predict_proba(X_test)
            if namespace is not None:
                proba = to_numpy(proba, namespace[0])
            scores[index] = neg_log_loss(proba, y_index_test, score_kwargs.get("sample_weight"))
        else:
            scores[index] = scorer(model, X_test, y_test, **score_kwargs)
    unconverged = [
        result.warning_message(params["tol"], data.dtype) + f" (C={C:g})"
        for C, result in zip(Cs, results, strict=True)
        if not result.converged
    ]
    return coefs, n_iter, scores, unconverged


class MultinomialLogitClassifierCV(
    ClassifierMixin, LinearPredictorMixin, *CALLBACK_MIXINS, BaseEstimator
):
    """Multinomial logistic regression with C (and l1_ratio) chosen by cross-validation.

    For every fold and every value of ``l1_ratio`` the model is fitted for
    all values of ``Cs`` along one path, from the strongest penalty
    (smallest C) to the weakest, each fit starting from the previous
    optimum. Each fit is scored on the held-out part of its fold; the pair
    (C, l1_ratio) with the best score summed over folds is chosen and, with
    ``refit=True``, the model is fitted once more on all the data, starting
    from the mean of the folds' coefficients at that pair. Folds run in
    parallel with joblib. The parameters and fitted attributes follow
    :class:`sklearn.linear_model.LogisticRegressionCV` where they overlap,
    in the layout it adopts with ``use_legacy_attributes=False``. Not taken
    over: ``penalty`` (deprecated there; ``l1_ratios`` and ``Cs=[np.inf]``
    say the same), ``dual``, ``intercept_scaling`` and ``random_state``
    (for solvers this package does not have); ``tol`` is 1e-6, as in
    :class:`MultinomialLogitClassifier`, and every fit of the path is held
    to it.

    Parameters
    ----------
    Cs : int or array-like of float, default=10
        Values of C to try. An int ``n`` means ``np.logspace(-4, 4, n)``.
    l1_ratios : array-like of float, default=(0.0,)
        Values of ``l1_ratio`` to try, each in ``[0, 1]`` (see
        :class:`MultinomialLogitClassifier`). Any positive value needs
        ``solver='lbfgs'`` or ``'auto'``.
    fit_intercept : bool, default=True
        Whether to fit the unpenalised intercept.
    cv : int, cross-validation generator or iterable, default=5
        As in :func:`sklearn.model_selection.check_cv`; an int means
        :class:`~sklearn.model_selection.StratifiedKFold` with that many folds.
    scoring : str or callable, default='neg_log_loss'
        Scorer used to choose the parameters and by :meth:`score` (see
        :func:`sklearn.metrics.check_scoring`). ``None`` means accuracy.
    solver : {'auto', 'lbfgs', 'newton-cg', 'newton-cholesky'}, default='auto'
        As in :class:`MultinomialLogitClassifier`.
    tol : float, default=1e-6
        As in :class:`MultinomialLogitClassifier`, for every fit.
    max_iter : int, default=100
        Largest number of solver iterations of each fit.
    class_weight : dict or 'balanced', default=None
        As in :class:`MultinomialLogitClassifier`; ``'balanced'`` weights
        are computed once on all the data, as LogisticRegressionCV does.
    n_jobs : int, default=None
        Number of fold paths fitted in parallel (joblib); None means 1
        unless in a :func:`joblib.parallel_backend` context.
    verbose : int, default=0
        Verbosity of joblib's progress messages.
    refit : bool, default=True
        If True, refit on all the data with the best pair. If False, average
        over folds the coefficients at each fold's own best pair, and report
        the mean of those C (and l1_ratio) values.
    l1_groups : {None, 'feature'}, default=None
        The L1 part of every fit element-wise (None) or the group lasso over
        features (``'feature'``), as in :class:`MultinomialLogitClassifier`;
        the path is warm-started as for the element-wise L1.
    coef_bounds : (lower, upper), default=None
        Box constraints on the coefficients of every fit, as in
        :class:`MultinomialLogitClassifier` (``solver`` must be ``'lbfgs'``
        or ``'auto'``).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    coef_ : ndarray of shape (n_classes, n_features)
        Coefficients of the final model.
    intercept_ : ndarray of shape (n_classes,)
        Intercepts of the final model.
    Cs_ : ndarray of shape (n_cs,)
        The values of C tried, in the order given.
    l1_ratios_ : ndarray of shape (n_l1_ratios,)
        The values of l1_ratio tried.
    C_ : float
        The chosen C.
    l1_ratio_ : float
        The chosen l1_ratio.
    scores_ : ndarray of shape (n_folds, n_l1_ratios, n_cs)
        Held-out score of every fit.
    coefs_paths_ : ndarray of shape (n_folds, n_l1_ratios, n_cs, n_classes, n_dof)
        Coefficients of every fit, with the intercept in the last column
        (``n_dof = n_features + fit_intercept``).
    n_iter_ : ndarray of shape (n_folds, n_l1_ratios, n_cs)
        Solver iterations of every fit.
    n_features_in_ : int
        Number of features seen in fit.
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Names of features seen in fit, when X was a DataFrame with string
        column names.

    See Also
    --------
    MultinomialLogitClassifier : The model for one C.
    sklearn.linear_model.LogisticRegressionCV : The same selection, other solvers.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skmultilogit import MultinomialLogitClassifierCV
    >>> X, y = load_iris(return_X_y=True)
    >>> model = make_pipeline(StandardScaler(), MultinomialLogitClassifierCV(Cs=8))
    >>> clf = model.fit(X, y)[-1]
    >>> clf.scores_.shape, clf.coefs_paths_.shape
    ((5, 1, 8), (5, 1, 8, 3, 5))
    >>> bool(clf.C_ in clf.Cs_)
    True
    """

    def __init__(
        self,
        Cs=10,
        *,
        l1_ratios=(0.0,),
        fit_intercept=True,
        cv=5,
        scoring="neg_log_loss",
        solver="auto",
        tol=1e-6,
        max_iter=100,
        class_weight=None,
        n_jobs=None,
        verbose=0,
        refit=True,
        coef_bounds=None,
        l1_groups=None,
    ):
        self.Cs = Cs
        self.l1_ratios = l1_ratios
        self.fit_intercept = fit_intercept
        self.cv = cv
        self.scoring = scoring
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter
        self.class_weight = class_weight
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.refit = refit
        self.coef_bounds = coef_bounds
        self.l1_groups = l1_groups

    # fit's groups are the splitter's (routed to it when it asks for them),
    # not a request of this estimator's own: an outer search then routes them
    # here as it does to LogisticRegressionCV, whose splitter asks for them
    __metadata_request__fit = {"groups": metadata_routing.UNUSED}

    @fit_method
    def fit(self, X, y, sample_weight=None, groups=None, **params):
        """Cross-validate the path of C (and l1_ratio) values, then fit the chosen model.

        With scikit-learn >= 1.9, callbacks set by ``set_callbacks`` see a
        task per fold path (fold and l1_ratio), under it one per value of C,
        under each one per solver iteration, and the refit with its
        iterations (see :ref:`callbacks`).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data (CSR/CSC kept sparse).
        y : array-like of shape (n_samples,)
            Class labels, at least two distinct ones.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights, used in every fit. Without metadata
            routing also passed to the scorer; with it, passed to the
            scorer and the splitter as they request it (see scikit-learn's
            `metadata routing
            <https://scikit-learn.org/stable/metadata_routing.html>`__), as
            LogisticRegressionCV does.
        groups : array-like of shape (n_samples,), default=None
            Group labels for a group-aware ``cv`` splitter (such as
            :class:`~sklearn.model_selection.GroupKFold`); with metadata
            routing, routed like ``**params``.
        **params : dict
            Only with metadata routing enabled
            (``sklearn.set_config(enable_metadata_routing=True)``): metadata
            for the splitter's ``split`` and the scorer's ``score``, routed
            as they request them.

        Returns
        -------
        self : MultinomialLogitClassifierCV
            The fitted estimator.
        """
        _raise_for_params(params, self, "fit")
        Cs = check_Cs(self.Cs)
        check_solver_params(self)
        # the group lasso names its own solver (check_l1_groups, once K and d are known)
        check_l1_groups(self.l1_groups, None, None)
        l1_ratios = check_l1_ratios(self.l1_ratios, None if self.l1_groups else self.solver)
        check_bool("refit", self.refit)
        check_cv_scoring(self.scoring)  # fails early if invalid

        metadata = routed_fit_params(self, sample_weight, groups, params)
        params = {
            "fit_intercept": self.fit_intercept,
            "solver": self.solver,
            "tol": float(self.tol),
            "max_iter": self.max_iter,
        }
        if is_dask_collection(X):
            classes, data, folds, paths, task = self._dask_paths(
                X, y, sample_weight, metadata, Cs, l1_ratios, params
            )
        else:
            classes, data, folds, paths, task = self._paths(
                X, y, sample_weight, metadata, Cs, l1_ratios, params
            )
        with task.ending_open_tasks_on_error():
            fitted = self._choose_and_refit(
                classes, data, folds, paths, task, Cs, l1_ratios, params
            )
        namespace = getattr(data, "namespace", None)
        if namespace is not None:
            # fitted on array-API data: every array attribute lives in its
            # namespace, float64 ones as float32 on a device without float64
            fitted["classes_"] = labels_to_namespace(fitted["classes_"], *namespace)
            arrays = ("coef_", "intercept_", "coefs_paths_", "n_iter_", "scores_")
            arrays += ("Cs_", "l1_ratios_")
            converted = to_namespace(tuple(fitted[name] for name in arrays), *namespace)
            fitted.update(zip(arrays, converted, strict=True))
        # all at once: a fit stopped midway (an error, a callback's) changes none of them
        for name, value in fitted.items():
            setattr(self, name, value)
        task.end(fitted=True)
        return self

    def _choose_and_refit(self, classes, data, folds, paths, task, Cs, l1_ratios, params):
        """The fitted attributes, as a dict: the paths' scores, the chosen pair, the model."""
        n_folds, n_l1, n_cs = len(folds), len(l1_ratios), len(Cs)
        coefs, n_iter, scores, unconverged = zip(*paths, strict=True)
        shape = (n_folds, n_l1, n_cs)
        coefs_paths = np.reshape(coefs, shape + np.shape(coefs[0])[1:])
        scores = np.reshape(scores, shape)
        fitted = {
            "coefs_paths_": coefs_paths,
            "n_iter_": np.reshape(n_iter, shape),
            "scores_": scores,
            "Cs_": Cs,
            "l1_ratios_": l1_ratios,
        }
        messages = [message for fold in unconverged for message in fold]
        if messages:
            warnings.warn(
                f"{len(messages)} of {n_folds * n_l1 * n_cs} cross-validation fits did not "
                f"converge; the first: {messages[0]}",
                ConvergenceWarning,
                stacklevel=3 + WRAPPER_FRAMES,
            )

        n_features = data.n_features
        if self.refit:
            # Best summed score; ties go to the earlier value in Cs, then in
            # l1_ratios, as LogisticRegressionCV breaks them.
            total = scores.sum(axis=0).T  # (n_cs, n_l1)
            best_c, best_l1 = np.unravel_index(np.argmax(total), total.shape)
            C, l1_ratio = float(Cs[best_c]), float(l1_ratios[best_l1])
            start_coef, start_intercept = _split_path_coef(
                coefs_paths[:, best_l1, best_c].mean(axis=0), n_features, self.fit_intercept
            )
            hooks = fit_hooks(task, self.max_iter, name="refit")
            on_iterate, done = (
                (None, None) if hooks is None else hooks(lambda: (start_coef, start_intercept))
            )
            coef, intercept, result = fit_coefficients(
                data,
                C=C,
                l1_ratio=l1_ratio,
                coef_init=start_coef,
                intercept_init=start_intercept,
                on_iterate=on_iterate,
                **params,
            )
            if done is not None:
                done(coef, intercept)
            if not result.converged:
                warnings.warn(
                    "The refit on all the data: " + result.warning_message(self.tol, data.dtype),
                    ConvergenceWarning,
                    stacklevel=3 + WRAPPER_FRAMES,
                )
        else:
            per_fold = scores.transpose(0, 2, 1).reshape(n_folds, -1)
            best_c, best_l1 = np.unravel_index(np.argmax(per_fold, axis=1), (n_cs, n_l1))
            chosen = coefs_paths[np.arange(n_folds), best_l1, best_c].mean(axis=0)
            coef, intercept = _split_path_coef(chosen, n_features, self.fit_intercept)
            coef = within_box(coef, params["coef_bounds"], data.dtype)  # the mean can round out
            C, l1_ratio = float(Cs[best_c].mean()), float(l1_ratios[best_l1].mean())
        fitted.update(
            C_=C,
            l1_ratio_=l1_ratio,
            classes_=classes,
            coef_=(coef := coef.astype(data.dtype)),
            intercept_=intercept.astype(data.dtype),
            _fitted_objective=FittedObjective.state(self, C, l1_ratio, params["coef_bounds"], coef),
        )
        return fitted

    def _root_task(self, X, y, sample_weight, classes, dtype, n_paths, n_cs, namespace=None):
        """The fit's callback task, begun, and its fold paths' tasks (not begun)."""
        task = Task.root(
            self,
            X,
            y,
            sample_weight,
            FittedAttributes(classes, dtype, namespace),
            max_subtasks=n_paths + bool(self.refit),
        )
        if not task.has_callbacks:
            return task, [NO_TASK] * n_paths
        # made here, before the parallel loop sends them to its workers (without
        # this task's data: each is given its fold's rows there)
        return task, [
            task.subtask("fold path", max_subtasks=n_cs).on_data(None, None) for _ in range(n_paths)
        ]

    def _add_penalty_params(self, params, n_classes, n_features, Cs, l1_ratios):
        """Add the validated ``coef_bounds`` and ``l1_groups`` to ``params`` (K and d known)."""
        params["coef_bounds"] = check_coef_bounds(self.coef_bounds, n_classes, n_features)
        has_l1 = bool(np.any(l1_ratios > 0) and np.any(np.isfinite(Cs)))
        params["l1_groups"] = check_l1_groups(
            self.l1_groups, self.solver if has_l1 else None, params["coef_bounds"]
        )

    def _paths(self, X, y, sample_weight, metadata, Cs, l1_ratios, params):
        """The fold paths in memory, folds in parallel (joblib).

        ``metadata``: the splitter's and the scorer's (``_cv_folds``).
        """
        split_params, score_params = metadata
        classes, data = prepare_training_data(self, X, y, sample_weight, self.class_weight)
        # the box needs K and d: params gains it here, for every fit and the refit
        self._add_penalty_params(params, len(classes), data.n_features, Cs, l1_ratios)
        namespace = getattr(data, "namespace", None)
        # weights on the host (n numbers) for the scorer and callbacks
        sample_weight, score_weight = (
            None if weight is None else check_sample_weight(to_host(weight), data.n_samples)
            for weight in (sample_weight, score_params.get("sample_weight"))
        )
        if score_weight is not None:
            score_params = {**score_params, "sample_weight": score_weight}
        y_labels = y
        y = classes[data.y]
        # a splitter may use X's values (blocked or spatial splits); array-API
        # rows stay on their device, and the splitter gets positions only
        rows = data.X if namespace is None else np.empty((data.n_samples, 0))
        # and groups in numpy (n labels), whatever X's namespace: the splitters
        # compute with numpy, which refuses an array on a GPU
        split_params = {name: read_back(value) for name, value in split_params.items()}
        folds = list(check_cv(self.cv, y, classifier=True).split(rows, y, **split_params))
        folds = check_fold_indices(folds, data.n_samples)
        check_fold_weights(folds, data.sample_weight, score_weight)
        task, fold_tasks = self._root_task(
            X,
            y_labels,
            sample_weight,
            classes,
            data.dtype,
            len(folds) * len(l1_ratios),
            len(Cs),
            namespace,
        )
        # array-API data stay on their device: folds in threads, not processes
        prefer = "processes" if namespace is None else "threads"
        with task.ending_open_tasks_on_error():
            paths = self._run_paths(
                data,
                y,
                classes,
                (sample_weight, score_params),
                folds,
                (Cs, l1_ratios, params),
                fold_tasks,
                prefer,
            )
        return classes, data, folds, paths, task

    def _run_paths(self, data, y, classes, metadata, folds, grid, fold_tasks, prefer):
        """Every (fold, l1_ratio) path of ``_fold_path``, in parallel with joblib.

        ``grid`` is ``(Cs, l1_ratios, params)``.
        """
        Cs, l1_ratios, params = grid
        return Parallel(n_jobs=self.n_jobs, verbose=self.verbose, prefer=prefer)(
            delayed(_fold_path)(
                data, y, classes, metadata, fold, Cs, l1_ratio, self.scoring, params, fold_task
            )
            for (fold, l1_ratio), fold_task in zip(
                ((fold, l1_ratio) for fold in folds for l1_ratio in l1_ratios),
                fold_tasks,
                strict=True,
            )
        )

    def _dask_paths(self, X, y, sample_weight, metadata, Cs, l1_ratios, params):
        """The fold paths on a Dask cluster: folds selected where the rows live (see ``_dask``).

        The held-out scores are weighted by the fit's ``sample_weight`` when
        the scorer gets it (``metadata``), and by nothing else.
        """
        from ._dask import class_indices, fold_path, prepare_dask_data

        scoring = scoring_on_the_rows(self.scoring, metadata[1], sample_weight)
        classes, data = prepare_dask_data(self, X, y, sample_weight, self.class_weight)
        self._add_penalty_params(params, len(classes), data.n_features, Cs, l1_ratios)
        self.n_features_in_ = data.n_features
        if hasattr(self, "feature_names_in_"):  # a Dask array has no column names
            del self.feature_names_in_
        y_labels = y
        y = classes[class_indices(data)]
        rows = np.empty((data.n_samples, 0))  # the splitter needs the rows, not X
        split_params = metadata[0]
        folds = list(check_cv(self.cv, y, classifier=True).split(rows, y, **split_params))
        folds = check_fold_indices(folds, data.n_samples)
        task, fold_tasks = self._root_task(
            X, y_labels, sample_weight, classes, data.dtype, len(folds) * len(l1_ratios), len(Cs)
        )
        pairs = ((fold, l1_ratio) for fold in folds for l1_ratio in l1_ratios)
        with task.ending_open_tasks_on_error():
            paths = [
                fold_path(data, fold, Cs, l1_ratio, scoring, params, fold_task)
                for (fold, l1_ratio), fold_task in zip(pairs, fold_tasks, strict=True)
            ]
        return classes, data, folds, paths, task

    def score(self, X, y, sample_weight=None, **params):
        """Score of the fitted model on ``X, y`` with the ``scoring`` used to choose it.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Test data.
        y : array-like of shape (n_samples,)
            True labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Passed to the scorer (with metadata routing: if it requests it).
        **params : dict
            Only with metadata routing enabled: metadata for the scorer's
            ``score``, routed as it requests them.

        Returns
        -------
        score : float
            Greater is better (``neg_log_loss`` is minus the mean log-loss).
        """
        _raise_for_params(params, self, "score")
        score_params = routed_score_params(self, sample_weight, params)
        sample_weight = score_params.get("sample_weight")
        if self.scoring is None:
            # check_scoring would hand back this very method
            return super().score(X, y, sample_weight=sample_weight)
        if self.scoring == "neg_log_loss" and input_namespace(self.coef_) is not None:
            return device_neg_log_loss(self, X, y, sample_weight)
        scorer = check_scoring(self, scoring=self.scoring)
        return scorer(self, X, y, **score_params)

    def get_metadata_routing(self):
        """The metadata routing of this estimator: its own, the splitter's and the scorer's.

        ``fit`` routes metadata to the ``cv`` splitter's ``split`` and to
        the scorer's ``score``, ``score`` to the scorer's ``score`` (see
        scikit-learn's `metadata routing
        <https://scikit-learn.org/stable/metadata_routing.html>`__).

        Returns
        -------
        routing : sklearn.utils.metadata_routing.MetadataRouter
            The routing information.
        """
        return metadata_router(self)
