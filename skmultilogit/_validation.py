"""What an estimator checks before fitting: parameters, labels, weights, class weights.

Every check raises a ValueError or TypeError that names the problem, before
any large allocation. The parameter checks are written here rather than taken
from ``sklearn.utils.check_scalar``: that lets NaN through every bound (``C=nan``
passes ``min_val=0``) and takes ``True`` for an integer, and its messages do
not say which values are allowed (``np.inf`` for ``C``). scikit-learn's
``_parameter_constraints`` rejects NaN but is private API and also takes
``True`` for an integer.
"""

import numbers

import numpy as np
import scipy.sparse as sp
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_consistent_length, column_or_1d, validate_data

from ._array_api import input_namespace, read_back, refuse_complex, to_host
from ._backends import NumpyBackend
from ._backends._array_api import ArrayAPIBackend
from ._objective import check_compressed
from ._penalties import check_group_lasso, check_l1_solver
from ._solvers import SOLVERS

FLOAT_DTYPES = (np.float64, np.float32)


def check_real(name, value, *, low, include_low, allow_inf=False):
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


def check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r}.")


def check_int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {value!r} of type {type(value).__name__}.")
    if value < low:
        raise ValueError(f"{name} must be >= {low}; got {value!r}.")


def check_l1_ratio(name, value, solver):
    """A float in [0, 1]; positive only with a solver that handles the L1 part.

    ``solver=None`` skips the solver check (no penalty: l1_ratio has no effect).
    """
    value = check_real(name, value, low=0.0, include_low=True)
    if value > 1:
        raise ValueError(f"{name} must be in [0, 1]; got {value!r}.")
    if solver is not None:
        check_l1_solver(solver, value, name)
    return value


def check_l1_groups(l1_groups, solver, coef_bounds):
    """``l1_groups``: None (element-wise L1) or ``"feature"`` (the group lasso), with its solver.

    The group lasso has its own solver (proximal Newton), which ``"auto"``
    picks, and takes no box constraints; both are refused here, before any
    work, only where an L1 part exists (``l1_ratio > 0``, finite C: the
    caller passes ``solver=None`` otherwise).
    """
    if l1_groups is not None and (not isinstance(l1_groups, str) or l1_groups != "feature"):
        raise ValueError(f"l1_groups must be None or 'feature'; got {l1_groups!r}.")
    if l1_groups is not None and solver is not None:
        check_group_lasso(solver, coef_bounds)
    return l1_groups


def check_coef_bounds(coef_bounds, n_classes, n_features):
    """``coef_bounds`` as ``(lower, upper)`` float64 arrays of shape (K, d), or None.

    None when no bound is given or every bound is infinite (then the fit is
    the unbounded one, with any solver). Each bound is a scalar or an array
    broadcastable to ``coef_``'s shape; NaN, a lower bound above its upper
    bound, and bounds that leave no value (``lower = inf``, ``upper =
    -inf``) are refused. Nothing of size K x d is allocated before the
    shapes are checked.
    """
    if coef_bounds is None:
        return None
    if not isinstance(coef_bounds, (tuple, list)) and not (
        isinstance(coef_bounds, np.ndarray) and coef_bounds.ndim > 0
    ):
        raise TypeError(
            f"coef_bounds must be a pair (lower, upper); got {type(coef_bounds).__name__}."
        )
    if len(coef_bounds) != 2:
        raise ValueError(
            f"coef_bounds must be a pair (lower, upper); got {len(coef_bounds)} items."
        )
    shape = (n_classes, n_features)
    bounds = []
    for name, bound, none in zip(("lower", "upper"), coef_bounds, (-np.inf, np.inf), strict=True):
        if bound is None:  # as scipy's bounds: no bound
            bound = none
        # an array of another namespace (a tensor on a GPU) to numpy: bounds
        # are parameters, K x d numbers used where the parameters live
        bound = read_back(bound)
        if isinstance(bound, (str, bytes)) or (
            isinstance(bound, np.ndarray) and bound.dtype.kind not in "biuf"
        ):
            raise TypeError(f"coef_bounds' {name} bound must be a number or an array of numbers.")
        try:
            bound = np.asarray(bound, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(
                f"coef_bounds' {name} bound must be a number or an array of numbers."
            ) from None
        try:
            fits = np.broadcast_shapes(bound.shape, shape) == shape
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(
                f"coef_bounds' {name} bound of shape {bound.shape} does not broadcast to "
                f"coef_'s shape {shape} (n_classes, n_features)."
            )
        if np.isnan(bound).any():
            raise ValueError(f"coef_bounds' {name} bound contains NaN.")
        bounds.append(np.broadcast_to(bound, shape))
    lower, upper = bounds
    crossed = np.argwhere(lower > upper)
    if crossed.size:
        k, j = crossed[0]
        raise ValueError(
            f"coef_bounds: lower > upper for {len(crossed)} coefficient(s), the first at "
            f"class index {k}, feature {j} ({lower[k, j]} > {upper[k, j]})."
        )
    if np.isposinf(lower).any() or np.isneginf(upper).any():
        raise ValueError(
            "coef_bounds: a lower bound of inf or an upper bound of -inf leaves no value."
        )
    if np.isneginf(lower).all() and np.isposinf(upper).all():
        return None
    return np.array(lower), np.array(upper)


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


def check_object_labels(y):
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


def check_sample_weight(sample_weight, n_samples):
    """Sample weights as a float64 vector: finite, non-negative, not all zero.

    (scikit-learn's ``_check_sample_weight`` is private API, which changes
    between the supported releases, and does not name the negative entries.)
    """
    if sample_weight is None:
        return np.ones(n_samples)
    sample_weight = np.asarray(sample_weight)
    if sample_weight.ndim == 0:
        sample_weight = np.full(n_samples, sample_weight)
    if sample_weight.dtype.kind == "O":
        # numbers held as objects (a pandas column of object dtype), which
        # LogisticRegression takes; anything else is refused below
        try:
            sample_weight = sample_weight.astype(np.float64)
        except (TypeError, ValueError):
            pass
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


def check_total_weight(weights, what="sample_weight times class_weight"):
    """Raise ValueError where the weights (``what``) or their sum overflow.

    Above float64's range the objective's weighting (``_objective.weighting``)
    would divide by an infinite total and fit a model of uniform
    probabilities without a word.
    """
    with np.errstate(over="ignore"):
        total = float(np.sum(weights))
    if not np.isfinite(total):
        raise ValueError(
            f"The weights ({what}) or their sum overflow float64. Scale them down: the "
            "model depends on C times the weights only, so weights divided by t with C "
            "multiplied by t fit the same model."
        )


def class_weight_vector(class_weight, classes, y_index, sample_weight):
    """One weight per class, as LogisticRegression computes it.

    ``"balanced"`` gives class k the weight ``sum(s) / (K * sum_{y_i=k} s_i)``
    (weighted counts, so that duplicating a row is the same as weighting it by 2).
    Not ``sklearn.utils.class_weight.compute_class_weight``: that takes negative
    and NaN weights from a dict, and re-encodes the labels, a second sort of y.
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
        weights[known[label]] = check_real(
            f"class_weight[{label!r}]", weight, low=0.0, include_low=True
        )
    return weights


def check_solver_params(estimator):
    """Validate what both estimators share: fit_intercept, solver, tol, max_iter, verbose."""
    check_bool("fit_intercept", estimator.fit_intercept)
    if not isinstance(estimator.solver, str) or estimator.solver not in SOLVERS:
        raise ValueError(f"solver must be one of {list(SOLVERS)}; got {estimator.solver!r}.")
    check_real("tol", estimator.tol, low=0.0, include_low=True)
    check_int("max_iter", estimator.max_iter, 1)
    if not isinstance(estimator.verbose, (bool, np.bool_)):
        check_int("verbose", estimator.verbose, 0)


def prepare_training_data(estimator, X, y, sample_weight, class_weight):
    """Validate ``X, y, sample_weight`` for ``fit``; encode labels; fold in class weights.

    Returns ``(classes, data)``: the sorted class labels and a
    :class:`~skmultilogit._backends.NumpyBackend` holding X as
    float32/float64 (CSR/CSC kept sparse, in canonical format), ``y`` as
    indices into ``classes`` and the per-sample weights ``s`` already
    multiplied by the class weights. Raises ValueError unless at least two
    classes have positive weight.
    """
    namespace = input_namespace(X)
    if namespace is not None:
        return _prepare_array_api_data(estimator, X, y, sample_weight, class_weight, *namespace)
    # y and sample_weight of another namespace or device than X's are
    # moved to X's (here numpy), as scikit-learn 1.9's estimators do (its
    # check_array_api_mixed_inputs): they are n numbers each
    y, sample_weight = to_host(y), to_host(sample_weight)
    y = check_object_labels(y)
    X, y = validate_data(
        estimator,
        X,
        y,
        accept_sparse=["csr", "csc"],
        dtype=FLOAT_DTYPES,
        ensure_min_samples=1,
        ensure_min_features=1,
    )
    if sp.issparse(X):
        check_compressed(X)
    if sp.issparse(X) and not X.has_canonical_format:
        # Summed duplicates give the same model; the copy keeps the
        # caller's matrix untouched and the feature statistics right.
        X = X.copy()
        X.sum_duplicates()
    classes, y_index, sample_weight = _encoded_labels_and_weights(
        estimator, y, sample_weight, class_weight, X.shape[0]
    )
    return classes, NumpyBackend(X, y_index, len(classes), sample_weight)


def _encoded_labels_and_weights(estimator, y, sample_weight, class_weight, n_samples):
    """``(classes, y_index, s)`` of validated labels: class weights folded into ``s``.

    Raises ValueError unless at least two classes have positive weight.
    """
    check_classification_targets(y)
    classes, y_index = np.unique(y, return_inverse=True)
    check_two_classes(estimator, classes)
    sample_weight = check_sample_weight(sample_weight, n_samples)
    # (before class_weight='balanced' divides by their sum)
    check_total_weight(sample_weight, "sample_weight")
    class_weight = class_weight_vector(class_weight, classes, y_index, sample_weight)
    with np.errstate(over="ignore"):
        sample_weight = sample_weight * class_weight[y_index]
    check_total_weight(sample_weight)
    check_two_weighted_classes(
        classes, np.bincount(y_index, weights=sample_weight, minlength=len(classes))
    )
    return classes, y_index, sample_weight


def _prepare_array_api_data(estimator, X, y, sample_weight, class_weight, xp, device):
    """:func:`prepare_training_data` for an array-API X: an ``ArrayAPIBackend`` on its device.

    X is validated in its namespace (float32 stays float32, other dtypes
    become float64 where the device has it); the labels and the weights,
    n numbers each, are encoded in numpy and moved to X's device, whatever
    namespace and device they came in (as scikit-learn 1.9's estimators
    move them to X's).
    """
    float_dtypes = [xp.float64, xp.float32]
    refuse_complex(X, xp)
    X = validate_data(estimator, X, dtype=float_dtypes, ensure_min_samples=1, ensure_min_features=1)
    y = to_host(y)
    y = check_object_labels(y)
    y = column_or_1d(y, warn=True)
    check_consistent_length(X, y)
    classes, y_index, sample_weight = _encoded_labels_and_weights(
        estimator, y, to_host(sample_weight), class_weight, X.shape[0]
    )
    return classes, ArrayAPIBackend(X, y_index, len(classes), sample_weight, xp, device)


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


def check_Cs(Cs):
    if isinstance(Cs, numbers.Integral) and not isinstance(Cs, bool):
        check_int("Cs", Cs, 1)
        return np.logspace(-4, 4, Cs)
    if isinstance(Cs, (str, bytes)) or not np.iterable(Cs):
        raise TypeError(f"Cs must be an int or a sequence of positive floats; got {Cs!r}.")
    values = [
        check_real(f"Cs[{index}]", C, low=0.0, include_low=False, allow_inf=True)
        for index, C in enumerate(Cs)
    ]
    if not values:
        raise ValueError("Cs must not be empty.")
    return np.array(values)


def check_l1_ratios(l1_ratios, solver):
    if isinstance(l1_ratios, (str, bytes)) or not np.iterable(l1_ratios):
        raise TypeError(f"l1_ratios must be a sequence of floats in [0, 1]; got {l1_ratios!r}.")
    values = [
        check_l1_ratio(f"l1_ratios[{index}]", value, solver)
        for index, value in enumerate(l1_ratios)
    ]
    if not values:
        raise ValueError("l1_ratios must not be empty.")
    return np.array(values)
