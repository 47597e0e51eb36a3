r"""Statistical inference for a fitted multinomial logit: covariance, tests, effects, intervals.

Parametrisation
---------------
The estimator stores one row per class, ``theta_k = (b_k, W_k)`` (intercept
first here, when there is one), and the probabilities depend only on
differences of rows. Inference is reported, as in statsmodels' ``MNLogit``,
for the contrasts with a reference class ``r``:

.. math::

    \beta_m = \theta_m - \theta_r, \qquad m \ne r,

a ``(K - 1) x p`` array with ``p = d + 1`` columns (the intercept's first).
Flattened row by row, ``beta`` indexes the covariance matrix: entry
``m p + q`` is class ``m``'s ``q``-th term.

Hessian and scores
------------------
With weights ``s_i``, design rows ``x~_i = (1, x_i)``, probabilities ``p_i``
and one-hot labels ``y_i``, the negative log-likelihood
``L = -sum_i s_i log p_{i, y_i}`` has, in the ``K p`` row parameters,

.. math::

    \nabla_{\theta_k} L = -\sum_i s_i (y_{ik} - p_{ik}) \tilde x_i, \qquad
    H = \sum_i s_i \left(\operatorname{diag}(p_i) - p_i p_i^\top\right)
        \otimes \tilde x_i \tilde x_i^\top,

the closed-form softmax Jacobian, formed by
``NumpyBackend.hessian`` (from ``_hessian.add_class_pairs``). With ``C < inf`` the
estimate minimises ``L + ||W||^2 / (2 C)``, so the penalised Hessian
``H + I_W / C`` (identity on the coefficients) replaces ``H``.

``H`` is singular along shifts shared by all classes: every such shift for
``C = inf``, the intercepts' shift for ``C < inf``. Let ``U`` be an
orthonormal basis of those directions, ``D`` a positive diagonal matrix and
``A`` the contrast map ``theta -> beta``. As ``A U = 0`` and
``M = H + U D U^T`` is invertible (``M^{-1} = H^+ + U D^{-1} U^T``, so ``D``
drops out of everything below; it is set to the size of ``H`` along each
term, which keeps ``M`` well conditioned whatever the features' units),

.. math::

    \operatorname{Cov}(\hat\beta) = A M^{-1} A^\top \quad \text{(nonrobust)},
    \qquad
    A M^{-1} J M^{-1} A^\top \quad \text{(sandwich)},

with ``J = sum_i s_i g_i g_i^T`` and ``g_i = (y_i - p_i) (x) x~_i`` (HC0);
HC1 multiplies by ``n / (n - k)`` (``n = sum s``, ``k = (K - 1) p``); the
cluster form sums ``s_i g_i`` within each group first and multiplies by
``G / (G - 1) (n - 1) / (n - k)``, ``G`` the number of groups of positive
weight. Weights count as frequencies: a row of weight 2 is two rows, one of
weight 0 none. Without a penalty ``A M^{-1} A^T`` is the inverse of
the Hessian of ``L`` in ``beta`` (statsmodels' ``cov_params``).

Average marginal effects
------------------------
.. math::

    \frac{\partial p_{ik}}{\partial x_{ij}} = p_{ik} D_{ikj}, \quad
    D_{ikj} = W_{kj} - \sum_l p_{il} W_{lj}, \qquad
    \text{AME}_{kj} = \frac{1}{n} \sum_i s_i p_{ik} D_{ikj}.

Their standard errors are by the delta method, ``J_me Cov(beta) J_me^T``,
with the exact Jacobian (``j'`` the design column of feature ``j``,
``x~`` the design row):

.. math::

    \frac{\partial (p_{ik} D_{ikj})}{\partial \beta_{mq}}
    = p_{ik} (\delta_{km} - p_{im}) \tilde x_{iq} D_{ikj}
    - p_{ik} p_{im} D_{imj} \tilde x_{iq}
    + \delta_{qj'} p_{ik} (\delta_{km} - p_{im}).

Prediction intervals
--------------------
For class ``k`` at ``x``, the log-odds ``eta_k = log(p_k / (1 - p_k)) =
z_k - log sum_{l != k} exp(z_l)`` has gradient ``(delta_km - q_m) x~`` in
``beta_m``, where ``q`` is the softmax over the classes other than ``k``
(``q_k = 0``). The interval ``expit(eta_k +- z_{1 - alpha/2} se(eta_k))``
stays inside ``[0, 1]``.
"""

import numpy as np
from sklearn.utils.validation import check_is_fitted, validate_data

from .._array_api import model_on_host, read_back
from .._backends import NumpyBackend
from .._classifier import MultinomialLogitClassifier
from .._cv import MultinomialLogitClassifierCV
from .._objective import FittedObjective, coefficients_digest
from .._validation import check_coef_bounds, check_sample_weight, class_weight_vector
from ._covariance import check_covariance_fits, covariance
from ._design import rows_with_intercept, term_names, weighted_mean
from ._identification import check_not_separated, collinear_columns, warn_if_not_at_optimum
from ._results import InferenceResult, MarginalEffects

__all__ = ["InferenceResult", "MarginalEffects", "inference"]

COV_TYPES = ("nonrobust", "HC0", "HC1", "cluster")


def fitted_objective(estimator):
    """The objective the model was fitted with: ``fit``'s record, whatever ``set_params`` did since.

    The record holds only while ``coef_`` holds the coefficients it was made
    with; a model whose coefficients were set by hand (or that has no
    record) is described by its parameters (``C_`` and ``l1_ratio_`` first,
    for the cross-validated estimator).
    """
    recorded = getattr(estimator, "_fitted_objective", None)
    if recorded is not None:
        objective = FittedObjective(**recorded)
        if objective.coef_digest == coefficients_digest(np.asarray(estimator.coef_)):
            return objective
    return FittedObjective(
        C=float(estimator.C_ if hasattr(estimator, "C_") else estimator.C),
        l1_ratio=float(getattr(estimator, "l1_ratio_", getattr(estimator, "l1_ratio", 0.0))),
        fit_intercept=bool(estimator.fit_intercept),
        class_weight=estimator.class_weight,
        coef_bounds=check_coef_bounds(
            getattr(estimator, "coef_bounds", None), *np.shape(estimator.coef_)
        ),
    )


def _check_estimator_type(estimator):
    """Refuse anything but this package's classifiers, naming what it is and what to pass."""
    if isinstance(estimator, (MultinomialLogitClassifier, MultinomialLogitClassifierCV)):
        return
    what = type(estimator).__name__
    hint = ""
    if hasattr(estimator, "steps") and hasattr(estimator, "named_steps"):
        hint = (
            " For a pipeline, pass its last step and the data as that step sees it: "
            "inference(pipe[-1], pipe[:-1].transform(X), y) (the earlier steps' "
            "estimates, such as a scaler's means, are then taken as known)."
        )
    elif hasattr(estimator, "best_estimator_"):
        hint = " For a fitted search, pass its best_estimator_ (refitted on the whole data)."
    elif hasattr(estimator, "coef_"):
        hint = (
            " Another estimator's attributes do not say that objective (a binary "
            "LogisticRegression has one row of coefficients, not two); "
            "MultinomialLogitClassifier takes LogisticRegression's parameters and fits its "
            "objective: refit with it."
        )
    raise TypeError(
        "inference needs a MultinomialLogitClassifier or MultinomialLogitClassifierCV; got "
        f"{what}. It reads the objective from this package's fit (C, l1_ratio, bounds, one "
        f"coefficient row per class).{hint}"
    )


def _check_inference_applies(objective):
    """Refuse a model fitted with an L1 part or a box: no normal approximation there."""
    if objective.l1_ratio > 0 and np.isfinite(objective.C):
        raise ValueError(
            "inference needs an L2 penalty or none; the model was fitted with "
            f"l1_ratio={objective.l1_ratio}. The L1 part sets coefficients to exactly zero, "
            "and the normal approximation behind standard errors does not hold for such "
            "estimates."
        )
    if objective.coef_bounds is not None:
        raise ValueError(
            "inference needs a model fitted without coef_bounds: at a coefficient held on "
            "its bound the estimate is not asymptotically normal, and the box breaks the "
            "identification the standard errors rest on. Refit with coef_bounds=None."
        )


def inference(
    estimator,
    X,
    y,
    sample_weight=None,
    *,
    reference_class=None,
    cov_type="nonrobust",
    groups=None,
):
    """Standard errors, z tests, intervals and marginal effects for a fitted model.

    Parameters
    ----------
    estimator : MultinomialLogitClassifier or MultinomialLogitClassifierCV
        Fitted, with no L1 part (``l1_ratio=0``, or ``C=np.inf``) and no
        ``coef_bounds``. The inference is that of the model as fitted: its
        ``C``, ``l1_ratio``, ``fit_intercept``, ``class_weight`` and
        ``coef_bounds`` at fit time, whatever ``set_params`` has changed
        since. The result keeps that model: a later refit of the estimator
        does not change it.
    X : {array-like, sparse matrix} of shape (n_samples, n_features)
        The training data the estimator was fitted on.
    y : array-like of shape (n_samples,)
        Its labels, all among ``estimator.classes_``.
    sample_weight : array-like of shape (n_samples,), default=None
        The weights of the fit (frequency weights: a row of weight 2 counts
        as two rows). The estimator's ``class_weight`` is applied on top, as
        in ``fit``.
    reference_class : label, default=None
        The class whose row is subtracted; ``classes_[0]`` when None.
    cov_type : {"nonrobust", "HC0", "HC1", "cluster"}, default="nonrobust"
        "nonrobust": the inverse Hessian of the (penalised) weighted
        log-likelihood. "HC0", "HC1": the sandwich, HC1 with the factor
        ``n / (n - k)``. "cluster": the sandwich with scores summed within
        ``groups``.
    groups : array-like of shape (n_samples,), default=None
        Cluster labels, for ``cov_type="cluster"`` only.

    Returns
    -------
    InferenceResult

    Raises
    ------
    TypeError
        When ``estimator`` is not one of this package's classifiers: the
        standard errors rest on the objective its fit recorded (the penalty,
        the bounds, one coefficient row per class), which another
        estimator's attributes do not say. For a
        :class:`~sklearn.pipeline.Pipeline`, pass its last step and the data
        as that step sees it: ``inference(pipe[-1], pipe[:-1].transform(X), y)``.
    ValueError
        Without a penalty (``C=np.inf``), when design columns are constant
        (besides the intercept) or collinear: their coefficients are not
        identified, and the error names them; when the classes are
        (quasi-)separated, found by a linear program, so that the estimate is
        infinite; or when the Hessian is singular. Also for an L1 penalty,
        and for labels unknown to the estimator.

    Notes
    -----
    With ``C < inf`` the covariance is that of the penalised estimate: its
    spread around its own expectation, which is shrunk towards zero. Intervals
    built from it are narrower than the estimate's distance to the true
    coefficients can be, and tests against zero are conservative in the
    direction of the shrinkage; they are not the intervals of an unpenalised
    fit. The nonrobust form is also the covariance of a Gaussian
    approximation to the posterior under a ``N(0, C)`` prior on every
    coefficient.

    A model fitted on array-API arrays (PyTorch, CuPy; see the user guide's
    array-API section) is read back to the host, and so are X, y, the
    weights and the groups when they are arrays of another namespace:
    inference runs in numpy, and the result holds numpy arrays.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_iris
    >>> from skmultilogit import MultinomialLogitClassifier, inference
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = MultinomialLogitClassifier(C=1.0).fit(X, y)
    >>> result = inference(clf, X, y)
    >>> result.params.shape, result.bse.shape, result.conf_int().shape
    ((2, 5), (2, 5), (2, 5, 2))
    >>> bool(np.all(result.bse > 0))
    True
    >>> lower, upper = result.predict_proba_interval(X[:3])
    >>> bool(np.all((lower <= clf.predict_proba(X[:3])) & (clf.predict_proba(X[:3]) <= upper)))
    True
    """
    _check_estimator_type(estimator)
    check_is_fitted(estimator, ("coef_", "intercept_", "classes_"))
    # A model fitted on device arrays, and data of another namespace, are
    # read back: inference runs in numpy (see docs/array_api.rst).
    estimator = model_on_host(estimator)
    X, y, sample_weight, groups = (read_back(array) for array in (X, y, sample_weight, groups))
    if not isinstance(cov_type, str) or cov_type not in COV_TYPES:
        raise ValueError(f"cov_type must be one of {list(COV_TYPES)}; got {cov_type!r}.")
    if (cov_type == "cluster") != (groups is not None):
        raise ValueError("groups are needed with cov_type='cluster', and only with it.")
    objective = fitted_objective(estimator)
    _check_inference_applies(objective)
    C = objective.C
    X = validate_data(estimator, X, accept_sparse=["csr", "csc"], dtype=np.float64, reset=False)
    classes = estimator.classes_
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(
            f"y must be 1-d with one label per row of X ({X.shape[0]}); got shape {y.shape}."
        )
    y_index = np.searchsorted(classes, y)
    y_index = np.minimum(y_index, len(classes) - 1)
    unknown = classes[y_index] != y
    if np.any(unknown):
        raise ValueError(
            f"y holds labels the estimator was not fitted on: {np.unique(y[unknown])[:10].tolist()}"
            f"; its classes are {classes.tolist()}."
        )
    if reference_class is None:
        reference = 0
    else:
        matches = np.flatnonzero(classes == reference_class)
        if matches.size != 1:
            raise ValueError(
                f"reference_class={reference_class!r} is not one of the classes {classes.tolist()}."
            )
        reference = int(matches[0])
    weight = check_sample_weight(sample_weight, X.shape[0])
    weight = weight * class_weight_vector(objective.class_weight, classes, y_index, weight)[y_index]
    n_classes, n_features = len(classes), X.shape[1]
    fit_intercept = objective.fit_intercept
    check_covariance_fits(n_classes * (n_features + fit_intercept))

    # Everything below is computed for the centred features (b = c - W center),
    # where the intercept is not nearly collinear with features far from zero,
    # and mapped back at the end.
    center = weighted_mean(X, weight) if fit_intercept else np.zeros(n_features)
    if not np.isfinite(C):
        dropped = collinear_columns(X, weight, fit_intercept, center)
        if dropped:
            names = [term_names(estimator, fit_intercept)[q] for q in dropped]
            raise ValueError(
                f"Without a penalty (C=np.inf) the coefficients of {len(dropped)} column(s) "
                f"are not identified: {names[:20]}{' ...' if len(names) > 20 else ''} are "
                "constant or (numerically) linear combinations of the columns before them. "
                "Drop these columns and refit, or fit with a finite C."
            )

    if np.isfinite(C) and fit_intercept:
        # (without a penalty the separation check below says it)
        class_totals = np.bincount(y_index, weights=weight, minlength=n_classes)
        if not np.all(class_totals > 0):
            empty = estimator.classes_[np.flatnonzero(~(class_totals > 0))].tolist()
            raise ValueError(
                f"The rows of class(es) {empty} have zero total weight: the intercept is "
                "not penalised, and that class's runs to -infinity (the objective falls "
                "along it without bound), so there is no finite estimate and no standard "
                "errors whatever C. Give those rows weight, drop the class, or fit "
                "without an intercept."
            )
    data = NumpyBackend(X, y_index, n_classes, weight)
    coef = np.asarray(estimator.coef_, dtype=np.float64)
    intercept = np.asarray(estimator.intercept_, dtype=np.float64) if fit_intercept else None
    warn_if_not_at_optimum(data, coef, intercept, C)
    if not np.isfinite(C):
        check_not_separated(X, y_index, weight, n_classes, fit_intercept)
    cov = covariance(data, coef, intercept, C, reference, center, cov_type, groups)
    params = rows_with_intercept(coef, intercept, fit_intercept)
    params = np.delete(params - params[reference], reference, axis=0)
    return InferenceResult(estimator, X, weight, params, cov, cov_type, reference, objective)
