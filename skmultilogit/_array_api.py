"""Array-API inputs (PyTorch, CuPy, array-api-strict): which namespace, and the softmax in it.

With ``sklearn.config_context(array_api_dispatch=True)`` an estimator fitted
on, or predicting for, an array of another namespace than numpy computes in
that namespace and on that array's device (the backend
``_backends._array_api.ArrayAPIBackend`` for the fit, the estimators'
predict methods), as scikit-learn's array-API estimators do. This module
holds what both need: the namespace of an input, the conversion of small
results to numpy, and the row-wise softmax in any namespace.

The math is the one of ``_loss``, written with the array-API standard's
functions only (``xp.max``, ``xp.exp``, ``xp.log``, ``xp.sum``).
"""

import copy

import numpy as np
from sklearn import get_config


def input_namespace(*arrays):
    """``(xp, device)`` of the arrays when they are array-API arrays to compute on, else None.

    None for numpy (and array-likes, sparse matrices, Dask), and whenever
    ``array_api_dispatch`` is off: then everything runs in numpy as before.
    """
    if not get_config().get("array_api_dispatch", False):
        return None
    from sklearn.utils._array_api import _is_numpy_namespace, device, get_namespace

    try:
        xp, is_array_api = get_namespace(*arrays)
    except (TypeError, ValueError):  # lists, tuples, objects of no namespace: numpy's
        return None
    if not is_array_api or _is_numpy_namespace(xp):
        return None
    return xp, device(*arrays)


def to_host(array):
    """``array`` as numpy if it is an array of another namespace (needs dispatch on); else as is.

    For what a fit reads back from its own fitted arrays or the user's
    labels and weights: n numbers, or K (d + 1).
    """
    namespace = None if array is None else input_namespace(array)
    return array if namespace is None else to_numpy(array, namespace[0])


def model_on_host(estimator):
    """``estimator`` if its fitted arrays are numpy; else a copy with every array read back.

    For what computes in numpy whatever the model was fitted on
    (``inference()``): a shallow copy whose array attributes of another
    namespace (``coef_``, ``intercept_``, ``classes_``, a CV estimator's
    paths and scores: K (d + 1) numbers and the like, never the data) are
    numpy arrays.
    """
    coef = getattr(estimator, "coef_", None)
    if coef is None or isinstance(coef, np.ndarray):
        return estimator
    host = copy.copy(estimator)
    for name, value in vars(estimator).items():
        setattr(host, name, read_back(value))
    return host


def read_back(value):
    """``value`` as numpy if it is an array of another array-API namespace; else as is.

    Whatever the ``array_api_dispatch`` setting (see :func:`namespace_of`).
    Where the dispatch is not available (``SCIPY_ARRAY_API`` unset), an
    array numpy can read itself (a tensor on the CPU) is read as numpy
    reads the rest of the input with the dispatch off.
    """
    if isinstance(value, np.ndarray) or not hasattr(value, "__dlpack__"):
        return value
    try:
        namespace = namespace_of(value)
    except ValueError:
        if hasattr(value, "__array__"):
            try:
                return np.asarray(value)
            except (TypeError, RuntimeError):  # on a GPU: only the dispatch reads it
                pass
        raise
    return value if namespace is None else to_numpy(value, namespace[0])


def namespace_of(array):
    """``(xp, device)`` of an array of another array-API namespace than numpy, else None.

    Whatever the ``array_api_dispatch`` setting: it is switched on for this
    thread while the namespace is looked up (arrays of another namespace
    exist only where it could be on).
    """
    from sklearn import config_context
    from sklearn.utils._array_api import _is_numpy_namespace, device, get_namespace

    try:
        with config_context(array_api_dispatch=True):
            xp, is_array_api = get_namespace(array)
    except (ImportError, RuntimeError) as error:
        raise ValueError(
            f"Arrays of {type(array).__module__} are read back to numpy by scikit-learn's "
            f"array-API dispatch, which is not available here: {error}"
        ) from error
    if not is_array_api or _is_numpy_namespace(xp):
        return None
    return xp, device(array)


def to_numpy(array, xp):
    """``array`` (of namespace ``xp``) as a numpy array on the CPU."""
    from sklearn.utils._array_api import _convert_to_numpy

    return _convert_to_numpy(array, xp)


def to_namespace(arrays, xp, device):
    """numpy ``arrays`` of numbers in ``xp`` on ``device``; float64 as float32 on a device without.

    As scikit-learn's array-API estimators hold their fitted attributes
    (its ``check_array_api_input``): in X's namespace and on X's device, in
    the dtype of the numpy fit, or the widest float the device has (MPS has
    no float64). For labels see :func:`labels_to_namespace`.
    """
    widest = widest_float(xp, device)

    def dtype(array):
        return widest if array.dtype.kind == "f" and array.dtype.itemsize > 4 else None

    return tuple(xp.asarray(array, dtype=dtype(array), device=device) for array in arrays)


def labels_to_namespace(classes, xp, device):
    """``classes`` in ``xp`` on ``device`` when they are numbers the device holds; else as is.

    Labels that are not numbers stay numpy, and so do float64 labels on a
    device without float64: a float32 copy would change their values
    (scikit-learn's checks exempt ``classes_`` from the namespace rule).
    """
    kind, wide = classes.dtype.kind, classes.dtype.itemsize > 4
    if kind not in "biuf" or (kind == "f" and wide and widest_float(xp, device) != xp.float64):
        return classes
    return xp.asarray(classes, device=device)


def widest_float(xp, device):
    """``xp.float64`` where the namespace has it on ``device``; else ``xp.float32`` (MPS).

    As scikit-learn's ``_max_precision_float_dtype``: the standard's
    ``__array_namespace_info__().dtypes`` names the floating dtypes of a device.
    """
    info = getattr(xp, "__array_namespace_info__", None)
    if info is None:  # a namespace older than the 2023.12 standard
        return xp.float64
    floating = info().dtypes(kind="real floating", device=device)
    return xp.float64 if "float64" in floating else xp.float32


def refuse_complex(X, xp):
    """Raise ValueError for complex X, as ``check_array`` does for numpy's.

    Under dispatch ``check_array`` casts a complex torch tensor to the real
    dtype asked for, dropping the imaginary part without a word.
    """
    dtype = getattr(X, "dtype", None)
    if dtype is not None and hasattr(xp, "isdtype") and xp.isdtype(dtype, "complex floating"):
        raise ValueError(f"Complex data not supported: X has dtype {dtype}.")


def numpy_dtype(xp_dtype, xp):
    """numpy's float32 or float64 for the namespace's floating dtype."""
    return np.dtype(np.float32) if xp_dtype == xp.float32 else np.dtype(np.float64)


def log_softmax(raw, xp):
    """Row-wise log-softmax of (n, K) logits: ``z - m - log sum exp(z - m)``, ``m`` the row max."""
    shifted = raw - xp.max(raw, axis=1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))


def softmax(raw, xp):
    """Row-wise softmax of (n, K) logits, without overflow."""
    exps = xp.exp(raw - xp.max(raw, axis=1, keepdims=True))
    return exps / xp.sum(exps, axis=1, keepdims=True)


def finite_logits(raw, xp):
    """Non-finite logits (only from extreme inputs) clipped: softmax of +-inf is NaN."""
    limit = float(xp.finfo(raw.dtype).max) / 4
    if bool(xp.all(xp.isfinite(raw))):
        return raw
    raw = xp.where(xp.isnan(raw), xp.zeros_like(raw), raw)
    return xp.clip(raw, -limit, limit)
