"""The scikit-learn estimator: parameters, fitted attributes, predictions.

Knows nothing of softmax internals or solvers: inputs are checked in
``_validation``, the fit is ``_path.fit_coefficients`` on a backend (in
memory, or on a Dask cluster through ``_dask``), and predictions come from
``_prediction``.
"""

import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning

from ._array_api import labels_to_namespace, read_back, to_namespace
from ._backends import is_dask_collection
from ._callbacks import (
    CALLBACK_MIXINS,
    WRAPPER_FRAMES,
    FittedAttributes,
    Task,
    fit_method,
)
from ._objective import FittedObjective
from ._path import fit_coefficients, starting_point
from ._prediction import LinearPredictorMixin
from ._validation import (
    check_bool,
    check_coef_bounds,
    check_l1_groups,
    check_l1_ratio,
    check_real,
    check_solver_params,
    prepare_training_data,
)


class MultinomialLogitClassifier(
    ClassifierMixin, LinearPredictorMixin, *CALLBACK_MIXINS, BaseEstimator
):
    """Multinomial (softmax) logistic regression with an L2, L1 or elastic-net penalty.

    Fits ``P(y = k | x) = softmax(W x + b)_k`` with one weight vector per class
    (``coef_`` has ``n_classes`` rows) by minimising

    ``C * sum_i s_i * (-log P(y_i | x_i)) + l1_ratio * ||W||_1
    + 0.5 * (1 - l1_ratio) * ||W||_F^2``

    where ``s_i`` is the sample weight times the class weight of ``y_i`` and
    the intercept is not penalised. This is exactly the objective of
    :class:`sklearn.linear_model.LogisticRegression` (multinomial; ``l1_ratio``
    with the meaning it has there since scikit-learn 1.8), so the two reach
    the same optimum and share parameter names.

    The closed-form loss and gradient (``grad_W = C (P - Y)^T diag(s) X + W``),
    Hessian-vector product and Hessian go to this package's Newton solver or
    to :func:`scipy.optimize.minimize`. The optimiser works in coordinates
    where each feature is centred and any feature whose spread is more than
    10x away from 1 is rescaled into that band: an exact change of variables
    that leaves the model and the optimum in your coordinates unchanged and
    costs no copy of X. It removes the effect of feature units and offsets
    that differ by orders of magnitude; what remains on hard
    problems (near-separable data, weak penalties) is curvature that only a
    Newton-type solver handles well, which is why ``solver='auto'`` picks
    ``'newton-cholesky'`` whenever its Hessian is affordable.

    With two classes the model is still the two-row softmax model. Since
    ``softmax(z)_1 = sigmoid(z_1 - z_0)`` and, at the optimum, ``w_0 = -w_1``,
    it equals LogisticRegression's binary model with ``2 * C`` and
    ``coef = w_1 - w_0``; :meth:`decision_function` returns that 1-d score
    ``z_1 - z_0``.

    Parameters
    ----------
    C : float, default=1.0
        Inverse regularisation strength, > 0. ``np.inf`` fits without penalty
        (whatever ``l1_ratio``).
    l1_ratio : float, default=0.0
        Elastic-net mixing in ``[0, 1]``: 0 is the L2 penalty, 1 the L1
        penalty (the lasso), values in between mix them as in the objective
        above. With ``l1_ratio > 0`` ``solver`` must be ``'lbfgs'`` or
        ``'auto'``: the fit is L-BFGS-B on the split ``W = W+ - W-`` with
        ``W+, W- >= 0``, a smooth problem under bounds, or with ``'auto'``
        on up to 256 parameters (``K (d + 1)``, ``K d`` without an
        intercept), no more than there are rows, without ``coef_bounds``
        proximal Newton (the exact Hessian's quadratic model plus the L1
        norm, minimised by coordinate descent), which reached the optimum in
        5 to 45 iterations where L-BFGS-B took hundreds (the user guide has
        the figures). Both give exact zeros in ``coef_``; its columns then
        need not sum to zero.
    l1_groups : {None, 'feature'}, default=None
        None: the L1 part is element-wise, ``||W||_1``. ``'feature'``: the
        group lasso, ``sum_j ||W[:, j]||_2`` over features, so that a
        feature is kept or dropped for all classes at once (whole zero
        columns of ``coef_``), as glmnet's ``type.multinomial="grouped"``
        and cyanure's ``penalty="l1l2"``. Solved by proximal Newton (the
        exact Hessian's quadratic model plus the group norm, minimised by
        block coordinate descent); ``solver`` must be ``'auto'``, and
        ``coef_bounds`` cannot be combined with it. No effect when
        ``l1_ratio=0``.
    fit_intercept : bool, default=True
        Whether to fit the unpenalised intercept ``b``.
    coef_bounds : (lower, upper), default=None
        Box constraints ``lower <= coef_ <= upper``, elementwise; each a
        scalar or an array broadcastable to ``coef_``'s shape
        ``(n_classes, n_features)``, ``-np.inf`` / ``np.inf`` for no bound
        (``(0, np.inf)``: non-negative effects). The intercept stays free.
        Solved by L-BFGS-B under these bounds (``solver`` must be
        ``'lbfgs'`` or ``'auto'``), with the L1 part too. Bounds break the
        model's invariance to adding one vector to every row of W, so the
        columns of a bounded ``coef_`` are not centred: its rows are the
        optimum within the box itself. All bounds infinite is the unbounded
        fit.
    class_weight : dict or 'balanced', default=None
        Weights per class, multiplying the sample weights. ``'balanced'``
        uses ``sum(s) / (n_classes * weighted count of the class)``, counting
        with the sample weights as recent LogisticRegression does (so a row of
        weight 2 counts as two rows). A dict may name classes absent from
        ``y`` only if every class of ``y`` has a weight, as in
        LogisticRegression (a cross-validation fold can lack a rare class);
        otherwise the unknown keys are taken for mistyped labels and rejected.
    solver : {'auto', 'lbfgs', 'newton-cg', 'newton-cholesky'}, default='auto'
        - ``'newton-cholesky'``: Newton's method. Each step is solved by
          conjugate gradients on the exact Hessian-vector product,
          preconditioned by a Cholesky factor of the full
          ``K (d + 1)``-square Hessian, rebuilt only when it has gone stale
          (on large data from a row sample drawn by curvature). About ten
          iterations whatever the feature scaling or penalty strength.
          Needs ``12 * (K (d + 1))^2`` bytes.
        - ``'lbfgs'``: L-BFGS (ten curvature pairs, L-BFGS-B's line search)
          on the closed-form loss and gradient; scipy's L-BFGS-B under
          bounds. Cheap iterations and no memory beyond a few gradients;
          many iterations on badly conditioned problems.
        - ``'newton-cg'``: trust-region Newton-CG with the closed-form
          Hessian-vector product and no preconditioner.
        - ``'auto'``: ``'newton-cholesky'`` when its Hessian takes at most
          64 MiB (``K (d + 1)`` up to about 2300), else ``'lbfgs'``; with an
          L1 part proximal Newton up to 256 parameters (see ``l1_ratio``).
    tol : float, default=1e-6
        Converged when the largest entry of the gradient of the objective
        divided by ``C * sum(s)``, in the solver's scaled coordinates, is at
        most ``tol`` (for ``C * sum(s) < 1`` each coefficient's entry is
        weighted so that the test means what it means at ``C * sum(s) = 1``,
        up to 100 times looser for float32 data, and a tiny C still gets its
        coefficients to rounding). A run that stops because the objective no longer
        decreases in floating point counts as converged if that entry is
        below ``max(tol, sqrt(machine epsilon))``, about 1.5e-8; any other
        stop short of ``tol`` raises a ConvergenceWarning. The default is
        tighter than LogisticRegression's 1e-4 because a gradient entry of
        1e-4 can leave the objective far from its minimum when the penalty
        is weak (raw 8x8 digits, C=1, newton-cholesky: 1.2e-3 above it in
        relative terms). On small problems (``n * d * K`` below 2e7)
        newton-cholesky goes on past ``tol`` to the optimum at float64's
        resolution: with float64 X and an L2 penalty, damped Newton steps
        while the Newton decrement says the objective is more than 1e-10 of
        itself above its minimum (a weak penalty: raw 8x8 digits at C=1e4
        stopped at ``tol`` are 0.55 of it above), then closely solved ones
        (usually two) until it says less; a looser ``tol`` saves no time
        there. With an L1 part the test is against at most a tenth of its
        strength ``l1_ratio / (C * sum(s))``, the gradient that decides
        whether a coefficient is zero (wine at C=1e4: stopped at 1e-6, 35
        nonzero coefficients where the optimum has 19).
    max_iter : int, default=100
        Largest number of solver iterations.
    warm_start : bool, default=False
        Start from the previous ``coef_`` and ``intercept_`` when refitting
        data with the same classes and features.
    verbose : int, default=0
        When > 0, print the objective and the gradient size every iteration.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    coef_ : ndarray of shape (n_classes, n_features)
        W; float32 when X was float32. Columns sum to zero over classes
        under the L2 penalty (or none) without ``coef_bounds``.
    intercept_ : ndarray of shape (n_classes,)
        b (zeros when ``fit_intercept=False``); sums to zero over classes.
    n_iter_ : ndarray of shape (1,)
        Solver iterations, shaped as LogisticRegression's.
    n_features_in_ : int
        Number of features seen in fit.
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Names of features seen in fit, when X was a DataFrame with string
        column names.

    See Also
    --------
    skmultilogit.loss_gradient : The objective and gradient this estimator minimises.
    sklearn.linear_model.LogisticRegression : The same model, other solvers.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skmultilogit import MultinomialLogitClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> model = make_pipeline(StandardScaler(), MultinomialLogitClassifier(C=1.0))
    >>> model.fit(X, y).score(X, y) > 0.99
    True
    >>> clf = model[-1]
    >>> clf.coef_.shape, clf.intercept_.shape
    ((10, 64), (10,))
    >>> print(clf.predict_proba(StandardScaler().fit_transform(X[:2])).sum(axis=1))
    [1. 1.]
    """

    def __init__(
        self,
        C=1.0,
        *,
        l1_ratio=0.0,
        l1_groups=None,
        fit_intercept=True,
        coef_bounds=None,
        class_weight=None,
        solver="auto",
        tol=1e-6,
        max_iter=100,
        warm_start=False,
        verbose=0,
    ):
        self.C = C
        self.l1_ratio = l1_ratio
        self.l1_groups = l1_groups
        self.fit_intercept = fit_intercept
        self.coef_bounds = coef_bounds
        self.class_weight = class_weight
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter
        self.warm_start = warm_start
        self.verbose = verbose

    def _validate_params(self):
        C = check_real("C", self.C, low=0.0, include_low=False, allow_inf=True)
        check_solver_params(self)
        # the group lasso names its own solver (check_l1_groups, in fit)
        check_l1_groups(self.l1_groups, None, None)
        grouped = self.l1_groups is not None
        check_l1_ratio(
            "l1_ratio", self.l1_ratio, None if grouped or not np.isfinite(C) else self.solver
        )
        check_bool("warm_start", self.warm_start)

    @fit_method
    def fit(self, X, y, sample_weight=None):
        """Fit the model to X, y.

        With scikit-learn >= 1.9, callbacks set by ``set_callbacks`` (such
        as ``sklearn.callback.ProgressBar`` or ``ScoringMonitor``) see one
        task per solver iteration, whichever the solver, on Dask too; one
        that asks to stop ends the fit at that iterate (see
        :ref:`callbacks`).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data. CSR and CSC matrices are used as they are (never
            densified); float32 data give a float32 model.
        y : array-like of shape (n_samples,)
            Class labels, at least two distinct ones.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights, not all zero; None means all ones.

        Returns
        -------
        self : MultinomialLogitClassifier
            The fitted estimator.
        """
        self._validate_params()
        if is_dask_collection(X):
            from ._dask import prepare_dask_data

            classes, data = prepare_dask_data(self, X, y, sample_weight, self.class_weight)
            self.n_features_in_ = data.n_features
            if hasattr(self, "feature_names_in_"):  # a Dask array has no column names
                del self.feature_names_in_
        else:
            classes, data = prepare_training_data(self, X, y, sample_weight, self.class_weight)
        coef_bounds = check_coef_bounds(self.coef_bounds, len(classes), data.n_features)
        has_l1 = float(self.l1_ratio) > 0 and np.isfinite(float(self.C))
        l1_groups = check_l1_groups(self.l1_groups, self.solver if has_l1 else None, coef_bounds)
        coef_init = intercept_init = None
        namespace = getattr(data, "namespace", None)
        if self.warm_start and self._can_warm_start(classes, data.n_features):
            # (a model fitted on array-API data holds them there: read back,
            # whether or not the dispatch is on for this fit)
            coef_init, intercept_init = read_back(self.coef_), read_back(self.intercept_)
            if not (np.all(np.isfinite(coef_init)) and np.all(np.isfinite(intercept_init))):
                # (set by hand: a fit from there stayed there, NaN and all)
                raise ValueError(
                    "warm_start=True starts from coef_ and intercept_, which hold NaN or "
                    "infinity; set finite values or warm_start=False."
                )
        task = Task.root(
            self,
            X,
            y,
            sample_weight,
            FittedAttributes(classes, data.dtype, namespace),
            max_subtasks=self.max_iter + 1,
        )
        with task.ending_open_tasks_on_error():
            start = starting_point(coef_init, intercept_init, len(classes), data.n_features)
            iterations = task.iterations(lambda: start)
            coef, intercept, result = fit_coefficients(
                data,
                C=float(self.C),
                l1_ratio=float(self.l1_ratio),
                fit_intercept=self.fit_intercept,
                solver=self.solver,
                tol=float(self.tol),
                max_iter=self.max_iter,
                verbose=self.verbose,
                coef_init=coef_init,
                intercept_init=intercept_init,
                on_iterate=iterations.on_iterate,
                coef_bounds=coef_bounds,
                l1_groups=l1_groups,
            )
            iterations.close()
            self._set_fitted(classes, coef, intercept, result, data.dtype, namespace)
            self._fitted_objective = FittedObjective.state(
                self, self.C, self.l1_ratio, coef_bounds, coef.astype(data.dtype)
            )
        task.end(fitted=True)
        return self

    def _set_fitted(self, classes, coef, intercept, result, dtype, data_namespace=None):
        if not result.converged:
            warnings.warn(
                result.warning_message(self.tol, dtype),
                ConvergenceWarning,
                stacklevel=3 + WRAPPER_FRAMES,
            )
        self.classes_ = classes
        self.coef_ = coef.astype(dtype)
        self.intercept_ = intercept.astype(dtype)
        self.n_iter_ = np.array([result.n_iter], dtype=np.int32)
        if data_namespace is not None:
            # fitted in another array namespace: the model lives there, on that device
            self.classes_ = labels_to_namespace(self.classes_, *data_namespace)
            self.coef_, self.intercept_, self.n_iter_ = to_namespace(
                (self.coef_, self.intercept_, self.n_iter_), *data_namespace
            )
        return self

    def _can_warm_start(self, classes, n_features):
        return (
            hasattr(self, "coef_")
            # (read back: np.array_equal answers False for an array it cannot convert)
            and np.array_equal(read_back(getattr(self, "classes_", None)), classes)
            and self.coef_.shape == (len(classes), n_features)
        )
