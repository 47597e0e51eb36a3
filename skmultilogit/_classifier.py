"""The scikit-learn estimator: validation, labels, weights, fitted attributes.

Knows nothing of softmax internals: the objective lives in ``_loss`` and its
minimisation in ``_solvers``.
"""

import numbers
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ._dask import is_dask_collection
from ._loss import log_softmax, softmax
from ._path import fit_coefficients
from ._solvers import SOLVERS

_FLOAT_DTYPES = (np.float64, np.float32)


def _check_real(name, value, *, low, include_low, allow_inf=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a real number; got {value!r} of type {type(value).__name__}."
        )
    value = float(value)
    if np.isnan(value) or (np.isinf(value) and not allow_inf):
        raise ValueError(
            f"{name} must be finite{' or np.inf' if allow_inf else ''}; got {value!r}."
        )
    if value < low or (value == low and not include_low):
        bound = ">=" if include_low else ">"
        raise ValueError(f"{name} must be {bound} {low}; got {value!r}.")
    return value


def _check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r}.")


def _check_int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {value!r} of type {type(value).__name__}.")
    if value < low:
        raise ValueError(f"{name} must be >= {low}; got {value!r}.")


def _check_l1_ratio(name, value, solver):
    """A float in [0, 1]; positive only with a solver that handles the L1 part.

    ``solver=None`` skips the solver check (no penalty: l1_ratio has no effect).
    """
    value = _check_real(name, value, low=0.0, include_low=True)
    if value > 1:
        raise ValueError(f"{name} must be in [0, 1]; got {value!r}.")
    if value > 0 and solver is not None and solver not in ("auto", "lbfgs"):
        raise ValueError(
            f"{name}={value!r} needs solver='lbfgs' or 'auto': solver={solver!r} handles "
            "only the L2 penalty (the L1 part is not smooth)."
        )
    return value


def _label_kind(label):
    if isinstance(label, str):
        return "str"
    if isinstance(label, (bool, np.bool_)):
        return "bool"
    if isinstance(label, numbers.Real):
        return "number"
    return type(label).__name__


def _is_missing(label):
    if label is None or type(label).__name__ == "NAType":  # pandas.NA
        return True
    return isinstance(label, numbers.Real) and label != label  # NaN


def _check_object_labels(y):
    """Labels held in an object array: no missing ones, and all of one kind.

    Runs before scikit-learn's checks, which reject such arrays with "Unknown
    label type", fail inside ``np.unique`` sorting ``None`` against a string,
    or raise "boolean value of NA is ambiguous" on ``pandas.NA``; here the
    message names the problem. Labels that are all numbers (an object column
    from pandas, say) become a numeric array and are accepted if they are
    class-like (integers, or integer-valued floats).
    """
    if sp.issparse(y) or not hasattr(y, "__len__"):
        return y
    array = np.asarray(y)
    if array.dtype != object:
        return y
    flat = array.ravel()
    missing = [i for i, label in enumerate(flat) if _is_missing(label)]
    if missing:
        raise ValueError(
            f"y has missing labels (None, NaN or NA) at indices {missing[:10]}"
            f"{' and more' if len(missing) > 10 else ''}: every sample needs a class label."
        )
    kinds = {}
    for label in flat:
        kinds.setdefault(_label_kind(label), label)
    if len(kinds) > 1:
        examples = ", ".join(f"{kind} ({label!r})" for kind, label in sorted(kinds.items()))
        raise ValueError(
            f"y mixes label types: {examples}. Class labels must be all strings, all "
            "numbers or all booleans; convert them to one type."
        )
    if set(kinds) <= {"number", "bool"}:
        return np.asarray(flat.tolist()).reshape(array.shape)
    return y


def _check_sample_weight(sample_weight, n_samples):
    """Sample weights as a float64 vector: finite, non-negative, not all zero."""
    if sample_weight is None:
        return np.ones(n_samples)
    sample_weight = np.asarray(sample_weight)
    if sample_weight.ndim == 0:
        sample_weight = np.full(n_samples, sample_weight)
    if sample_weight.dtype.kind not in "biuf":
        raise ValueError(f"sample_weight must hold real numbers; got dtype {sample_weight.dtype}.")
    sample_weight = sample_weight.astype(np.float64)
    if sample_weight.ndim != 1 or sample_weight.shape[0] != n_samples:
        raise ValueError(
            f"sample_weight must have shape ({n_samples},), one weight per sample; "
            f"got shape {sample_weight.shape}."
        )
    if not np.all(np.isfinite(sample_weight)):
        raise ValueError("sample_weight contains NaN or infinity.")
    if np.any(sample_weight < 0):
        raise ValueError(
            "sample_weight must be non-negative; got negative weights at indices "
            f"{np.flatnonzero(sample_weight < 0)[:10].tolist()}."
        )
    if not np.any(sample_weight > 0):
        raise ValueError("sample_weight must not be all zero: nothing to fit.")
    return sample_weight


def _class_weight_vector(class_weight, classes, y_index, sample_weight):
    """One weight per class, as LogisticRegression computes it.

    ``"balanced"`` gives class k the weight ``sum(s) / (K * sum_{y_i=k} s_i)``
    (weighted counts, so that duplicating a row is the same as weighting it by 2).
    """
    n_classes = len(classes)
    if class_weight is None:
        return np.ones(n_classes)
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(
                f"class_weight must be 'balanced', a dict or None; got {class_weight!r}."
            )
        counts = np.bincount(y_index, weights=sample_weight, minlength=n_classes)
        with np.errstate(divide="ignore"):
            weights = sample_weight.sum() / (n_classes * counts)
        weights[counts == 0] = 0.0
        return weights
    if not isinstance(class_weight, dict):
        raise TypeError(
            f"class_weight must be 'balanced', a dict or None; got {type(class_weight).__name__}."
        )
    weights = np.ones(n_classes)
    known = {c: k for k, c in enumerate(classes.tolist())}
    unknown = [c for c in class_weight if c not in known]
    unweighted = [c for c in classes.tolist() if c not in class_weight]
    # As in LogisticRegression: keys naming classes absent from y are fine when
    # every class of y has a weight (a CV fold may lack a rare class); with
    # classes left unweighted they are most likely mistyped labels.
    if unknown and unweighted:
        raise ValueError(
            f"class_weight names classes that are not in the data: {unknown}, while "
            f"classes {unweighted} of the data have no weight; the classes are "
            f"{classes.tolist()}."
        )
    for label, weight in class_weight.items():
        if label not in known:
            continue
        weights[known[label]] = _check_real(
            f"class_weight[{label!r}]", weight, low=0.0, include_low=True
        )
    return weights


def check_solver_params(estimator):
    """Validate what both estimators share: fit_intercept, solver, tol, max_iter, verbose."""
    _check_bool("fit_intercept", estimator.fit_intercept)
    if not isinstance(estimator.solver, str) or estimator.solver not in SOLVERS:
        raise ValueError(f"solver must be one of {list(SOLVERS)}; got {estimator.solver!r}.")
    _check_real("tol", estimator.tol, low=0.0, include_low=True)
    _check_int("max_iter", estimator.max_iter, 1)
    if not isinstance(estimator.verbose, (bool, np.bool_)):
        _check_int("verbose", estimator.verbose, 0)


def prepare_training_data(estimator, X, y, sample_weight, class_weight):
    """Validate ``X, y, sample_weight`` for ``fit``; encode labels; fold in class weights.

    Returns ``(X, classes, y_index, sample_weight)``: X as float32/float64
    (CSR/CSC kept sparse, in canonical format), the sorted class labels,
    ``y`` as indices into them, and the per-sample weights ``s`` already
    multiplied by the class weights. Raises ValueError unless at least two
    classes have positive weight.
    """
    y = _check_object_labels(y)
    X, y = validate_data(
        estimator,
        X,
        y,
        accept_sparse=["csr", "csc"],
        dtype=_FLOAT_DTYPES,
        ensure_min_samples=1,
        ensure_min_features=1,
    )
    if sp.issparse(X) and not X.has_canonical_format:
        # Summed duplicates give the same model; the copy keeps the
        # caller's matrix untouched and the feature statistics right.
        X = X.copy()
        X.sum_duplicates()
    check_classification_targets(y)
    classes, y_index = np.unique(y, return_inverse=True)
    check_two_classes(estimator, classes)
    sample_weight = _check_sample_weight(sample_weight, X.shape[0])
    class_weight = _class_weight_vector(class_weight, classes, y_index, sample_weight)
    sample_weight = sample_weight * class_weight[y_index]
    check_two_weighted_classes(
        classes, np.bincount(y_index, weights=sample_weight, minlength=len(classes))
    )
    return X, classes, y_index, sample_weight


def check_two_classes(estimator, classes):
    """Raise ValueError unless the sorted labels ``classes`` hold at least 2 classes."""
    if len(classes) < 2:
        raise ValueError(
            f"{type(estimator).__name__} needs samples of at least 2 classes, "
            f"but the data contains only one class: {classes[0]!r}."
        )


def check_two_weighted_classes(classes, weighted_counts):
    """Raise ValueError unless 2 classes have positive total weight (sample x class weight)."""
    weighted_classes = np.flatnonzero(weighted_counts > 0)
    if len(weighted_classes) < 2:
        raise ValueError(
            "After applying sample_weight and class_weight only one class has "
            f"positive weight ({classes[weighted_classes].tolist()}): a classifier "
            "needs at least 2 classes with positive weight."
        )


def convergence_message(result, dtype, tol):
    """The ConvergenceWarning text for an unconverged :class:`SolverResult`, with advice."""
    said = (
        f"{result.solver} stopped after {result.n_iter} iterations with the largest "
        f"{'projected ' if result.l1 else ''}gradient entry at {result.grad_max:.2e}, "
        f"above tol={tol}"
    )
    if result.reason == "max_iter":
        advice = "Increase max_iter" + (
            ", or use solver='newton-cholesky', which needs far fewer iterations "
            "on badly scaled data or weak penalties."
            if result.solver == "lbfgs" and not result.l1
            else "."
        )
    elif result.reason == "inner_solve":
        advice = (
            "A Newton step's conjugate-gradient solve did not terminate: the "
            "problem is numerically degenerate. Standardise the features, or use "
            "solver='lbfgs'."
        )
    elif dtype == np.float32:
        advice = (
            "The objective no longer decreases at float32 precision: fit float64 "
            "data for a tighter optimum, or loosen tol."
        )
    else:
        advice = (
            "The objective no longer decreases at float64 precision: tol is below "
            "what float64 resolves on this problem (tol far below 1e-8, or very "
            "badly conditioned data). Loosen tol, standardise the features or use a "
            "smaller C"
            + (
                ", or use solver='newton-cholesky', which takes steps that shrink the "
                "gradient when the objective can no longer tell."
                if result.solver == "lbfgs" and not result.l1
                else "."
            )
        )
    return f"{said} ({result.message}). {advice}"


class MultinomialLogitClassifier(ClassifierMixin, BaseEstimator):
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
        above. With ``l1_ratio > 0`` the fit is L-BFGS-B on the split
        ``W = W+ - W-`` with ``W+, W- >= 0``, a smooth problem under bounds
        that gives exact zeros in ``coef_`` (``solver`` must be ``'lbfgs'``
        or ``'auto'``); the columns of ``coef_`` then need not sum to zero.
    fit_intercept : bool, default=True
        Whether to fit the unpenalised intercept ``b``.
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
        - ``'lbfgs'``: L-BFGS-B on the closed-form loss and gradient. Cheap
          iterations and no memory beyond a few gradients; many iterations
          on badly conditioned problems.
        - ``'newton-cg'``: trust-region Newton-CG with the closed-form
          Hessian-vector product and no preconditioner.
        - ``'auto'``: ``'newton-cholesky'`` when its Hessian takes at most
          64 MiB (``K (d + 1)`` up to about 2300), else ``'lbfgs'``.
    tol : float, default=1e-6
        Converged when the largest entry of the gradient of the objective
        divided by ``C * sum(s)``, in the solver's scaled coordinates, is at
        most ``tol``. A run that stops because the objective no longer
        decreases in floating point counts as converged if that entry is
        below ``max(tol, sqrt(machine epsilon))``, about 1.5e-8; any other
        stop short of ``tol`` raises a ConvergenceWarning. The default is
        tighter than LogisticRegression's 1e-4 because a gradient entry of
        1e-4 can leave the objective far from its minimum when the penalty
        is weak (raw 8x8 digits, C=1, newton-cholesky: 1.2e-3 above it in
        relative terms; at 1e-6, 3e-9).
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
        under the L2 penalty (or none).
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
        fit_intercept=True,
        class_weight=None,
        solver="auto",
        tol=1e-6,
        max_iter=100,
        warm_start=False,
        verbose=0,
    ):
        self.C = C
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.class_weight = class_weight
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter
        self.warm_start = warm_start
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def _validate_params(self):
        C = _check_real("C", self.C, low=0.0, include_low=False, allow_inf=True)
        check_solver_params(self)
        _check_l1_ratio("l1_ratio", self.l1_ratio, self.solver if np.isfinite(C) else None)
        _check_bool("warm_start", self.warm_start)

    def fit(self, X, y, sample_weight=None):
        """Fit the model to X, y.

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
            from ._dask import fit_dask

            classes, coef, intercept, result, dtype, n_features = fit_dask(
                self, X, y, sample_weight
            )
            self.n_features_in_ = n_features
            if hasattr(self, "feature_names_in_"):  # a Dask array has no column names
                del self.feature_names_in_
            return self._set_fitted(classes, coef, intercept, result, dtype)
        X, classes, y_index, sample_weight = prepare_training_data(
            self, X, y, sample_weight, self.class_weight
        )
        coef_init = intercept_init = None
        if self.warm_start and self._can_warm_start(classes, X.shape[1]):
            coef_init, intercept_init = self.coef_, self.intercept_
        coef, intercept, result = fit_coefficients(
            X,
            y_index,
            len(classes),
            sample_weight,
            C=float(self.C),
            l1_ratio=float(self.l1_ratio),
            fit_intercept=self.fit_intercept,
            solver=self.solver,
            tol=float(self.tol),
            max_iter=self.max_iter,
            verbose=self.verbose,
            coef_init=coef_init,
            intercept_init=intercept_init,
        )
        return self._set_fitted(classes, coef, intercept, result, X.dtype)

    def _set_fitted(self, classes, coef, intercept, result, dtype):
        if not result.converged:
            warnings.warn(
                convergence_message(result, dtype, self.tol), ConvergenceWarning, stacklevel=3
            )
        self.classes_ = classes
        self.coef_ = coef.astype(dtype)
        self.intercept_ = intercept.astype(dtype)
        self.n_iter_ = np.array([result.n_iter], dtype=np.int32)
        return self

    def _can_warm_start(self, classes, n_features):
        return (
            hasattr(self, "coef_")
            and np.array_equal(getattr(self, "classes_", None), classes)
            and self.coef_.shape == (len(classes), n_features)
        )

    def _raw_prediction(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=_FLOAT_DTYPES, reset=False)
        raw = X @ self.coef_.T
        raw = np.asarray(raw) + self.intercept_
        if not np.all(np.isfinite(raw)):
            # Only reachable with extreme inputs; softmax of +-inf is NaN.
            limit = np.finfo(raw.dtype).max / 4
            np.clip(raw, -limit, limit, out=raw)
            np.nan_to_num(raw, copy=False, nan=0.0, posinf=limit, neginf=-limit)
        return raw

    def decision_function(self, X):
        """Raw scores ``X coef_^T + intercept_``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Data.

        Returns
        -------
        scores : ndarray of shape (n_samples, n_classes) or (n_samples,)
            The logits; with two classes the 1-d score ``z_1 - z_0``, positive
            where ``classes_[1]`` is predicted.
        """
        if is_dask_collection(X):
            from ._dask import predict_blocks

            return predict_blocks(self, "decision_function", X)
        raw = self._raw_prediction(X)
        if raw.shape[1] == 2:
            return raw[:, 1] - raw[:, 0]
        return raw

    def predict(self, X):
        """Most probable class for each sample.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Data.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        if is_dask_collection(X):
            from ._dask import predict_blocks

            return predict_blocks(self, "predict", X)
        raw = self._raw_prediction(X)
        return self.classes_[np.argmax(raw, axis=1)]

    def predict_proba(self, X):
        """Class probabilities ``softmax(X coef_^T + intercept_)``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Data.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``; rows sum to one.
        """
        if is_dask_collection(X):
            from ._dask import predict_blocks

            return predict_blocks(self, "predict_proba", X)
        return softmax(self._raw_prediction(X))

    def predict_log_proba(self, X):
        """Log class probabilities, finite even where probabilities underflow.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Data.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            Computed as a log-softmax, not as the log of :meth:`predict_proba`.
        """
        if is_dask_collection(X):
            from ._dask import predict_blocks

            return predict_blocks(self, "predict_log_proba", X)
        return log_softmax(self._raw_prediction(X))
