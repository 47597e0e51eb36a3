"""The objective: a backend's data term plus a penalty, as a function of one flat vector.

.. math::

    F(W, b) = C \\sum_i s_i \\, (-\\log P_{i, y_i}) + \\text{penalty}(W),
    \\qquad \\text{penalty}(W) = \\alpha \\lVert W \\rVert_1
        + \\tfrac12 (1 - \\alpha) \\lVert W \\rVert_F^2

with ``s_i`` the sample weight times the class weight and the intercept
unpenalised; ``C = inf`` means no penalty (``F`` is then the weighted negative
log-likelihood). Solvers minimise ``F / (C sum(s))`` instead (``F / sum(s)``
when ``C = inf``), the *normalised* objective, as scikit-learn does, so that
gradients are of order one whatever the number of samples; the minimiser is
the same. :func:`weighting` turns ``(C, normalize)`` into the per-sample
factors of the data term and the penalty's strength, without forming the
product ``C * sum(s)``, which overflows for huge C.

Parameters travel as one flat float64 vector ``w = [coef.ravel(),
intercept]`` (coef in C order, so ``w[:K*d].reshape(K, d)`` is a view),
which is what ``scipy.optimize.minimize`` works with.
"""

import hashlib
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ._backends import NumpyBackend
from ._backends._design import in_design_coordinates
from ._penalties import make_penalty

__all__ = ["loss_gradient"]


@dataclass(frozen=True)
class FittedObjective:
    """The objective a fitted model minimised, recorded by ``fit``.

    Statistical inference needs the objective of the model at hand: the
    penalised Hessian, the weights and the design all come from it. The
    estimator's parameters cannot say what it was once ``set_params`` has
    changed them without a refit, so ``fit`` keeps this record beside
    ``coef_``, as the private ``_fitted_objective``: a plain dict (see
    :meth:`state`), which skops loads without trusting one more type.

    Attributes
    ----------
    C : float
        The inverse penalty strength (``C_`` for the cross-validated estimator).
    l1_ratio : float
        The L1 share of the penalty (``l1_ratio_`` for the cross-validated one).
    fit_intercept : bool
        Whether the intercepts were fitted.
    class_weight : dict, 'balanced' or None
        As passed (a dict is copied).
    coef_bounds : tuple of ndarray or None
        The validated box, ``None`` where the model had none.
    coef_digest : str or None
        A fingerprint of the fitted ``coef_`` (:func:`coefficients_digest`):
        the record is that of the model only while ``coef_`` still holds
        those values (not once they are set by hand, nor in a copy of the
        estimator taken during a later fit).
    """

    C: float
    l1_ratio: float
    fit_intercept: bool
    class_weight: object
    coef_bounds: object
    coef_digest: object = None

    @classmethod
    def state(cls, estimator, C, l1_ratio, coef_bounds, coef):
        """The record of a fit as a dict of plain values, ``FittedObjective(**state)`` its reading.

        ``C`` and ``l1_ratio`` as fitted (the CV estimator's chosen pair),
        the validated ``coef_bounds`` and ``coef`` as ``coef_`` will hold
        it (numpy, in its dtype); ``fit_intercept`` and ``class_weight`` are
        ``estimator``'s parameters at fit time.
        """
        class_weight = estimator.class_weight
        if isinstance(class_weight, dict):
            class_weight = dict(class_weight)
        fit_intercept = bool(estimator.fit_intercept)
        digest = coefficients_digest(coef)
        return vars(
            cls(float(C), float(l1_ratio), fit_intercept, class_weight, coef_bounds, digest)
        )


def coefficients_digest(coef):
    """A fingerprint of a numpy array's dtype, shape and values (16 bytes of BLAKE2b, as hex)."""
    coef = np.ascontiguousarray(coef)
    digest = hashlib.blake2b(f"{coef.dtype.str}{coef.shape}".encode(), digest_size=16)
    digest.update(coef.tobytes())
    return digest.hexdigest()


def weighting(C, normalize, total_weight):
    """``(multiplier, divisor, strength)``: the data term's factors and the penalty's.

    The evaluated objective is ``sum_i s_i (multiplier / divisor) l_i +
    strength * penalty(W)``: ``(C, 1, 1)`` for ``F`` itself, ``(1, sum(s),
    1 / (C sum(s)))`` normalised; ``C = inf`` drops the factor C and the
    penalty.
    """
    no_penalty = np.isinf(C)
    if normalize:
        if no_penalty:
            return 1.0, total_weight, 0.0
        # 1 / (C sum(s)), not (1 / C) / sum(s): 1 / C overflows below C =
        # 5.6e-309 however large sum(s) is (but where C sum(s) overflows,
        # the quotients' order keeps the strength above 0)
        # (Python floats: an overflow is inf, without numpy's RuntimeWarning)
        weighted_C = float(C) * float(total_weight)
        if np.isinf(weighted_C):
            return 1.0, total_weight, (1.0 / C) / total_weight
        strength = 1.0 / weighted_C if weighted_C > 0 else np.inf
        if np.isinf(strength):
            raise ValueError(
                f"C * sum(sample_weight) = {weighted_C:.3g} (the weights times class_weight) "
                "is too small: the penalty's strength 1 / (C * sum(sample_weight)) overflows "
                "float64. The coefficients are 0 to rounding long before that (C * "
                "sum(sample_weight) = 1e-300 already holds them there): use a larger C."
            )
        return 1.0, total_weight, strength
    return (1.0 if no_penalty else C), 1.0, 0.0 if no_penalty else 1.0


class MultinomialLoss:
    """The penalised multinomial logistic objective on fixed data.

    Evaluates the objective of the module docstring (the smooth part: the
    data term and the L2 part of the penalty), its gradient, Hessian-vector
    product and Hessian at a flat parameter vector, in the user's
    coordinates. The data term comes from a backend (see ``_backends``), the
    penalty from ``_penalties``; the non-smooth part of a penalty is the
    solver's (``penalty.problem``).

    Parameters
    ----------
    data : backend
        X, labels and per-sample factors (e.g. a ``NumpyBackend``).
    penalty : L2Penalty or ElasticNetPenalty
        The penalty with its strength in this objective's scale.
    fit_intercept : bool, default=True
        Whether ``w`` ends with K intercepts.

    Examples
    --------
    >>> import numpy as np
    >>> from skmultilogit._objective import MultinomialLoss
    >>> X = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    >>> loss = MultinomialLoss.from_arrays(X, np.array([0, 1, 2]), 3, np.ones(3))
    >>> f, g = loss.loss_gradient(np.zeros(loss.n_params))
    >>> bool(np.isclose(f, 3 * np.log(3)))
    True
    """

    def __init__(self, data, penalty, *, fit_intercept=True):
        self.data = data
        self.penalty = penalty
        self.fit_intercept = bool(fit_intercept)
        self.n_classes = data.n_classes
        self.n_features = data.n_features

    @classmethod
    def from_data(
        cls,
        data,
        C=1.0,
        *,
        fit_intercept=True,
        normalize=False,
        l1_ratio=0.0,
        coef_bounds=None,
        l1_groups=None,
    ):
        """The objective with ``C`` and ``l1_ratio`` (see the module docstring) on a backend.

        ``coef_bounds``: ``(lower, upper)`` arrays of shape (K, d) boxing the
        coefficients, or None (see ``_penalties.BoxBoundedPenalty``);
        ``l1_groups="feature"``: the L1 part as the group norm of each
        feature's coefficients (``_penalties.GroupLassoPenalty``).
        """
        multiplier, divisor, strength = weighting(float(C), normalize, data.total_weight)
        return cls(
            data.with_factor(multiplier, divisor),
            make_penalty(strength, float(l1_ratio), coef_bounds, l1_groups),
            fit_intercept=fit_intercept,
        )

    @classmethod
    def from_arrays(
        cls,
        X,
        y,
        n_classes,
        sample_weight,
        C=1.0,
        *,
        fit_intercept=True,
        normalize=False,
        l1_ratio=0.0,
    ):
        """:meth:`from_data` on X held in memory (dense, CSR or CSC; float32 or float64)."""
        data = NumpyBackend(X, y, n_classes, sample_weight)
        return cls.from_data(
            data, C, fit_intercept=fit_intercept, normalize=normalize, l1_ratio=l1_ratio
        )

    @property
    def n_params(self):
        """Length of the flat parameter vector."""
        return self.n_classes * (self.n_features + self.fit_intercept)

    def unpack(self, w):
        """Split a flat vector into ``(coef, intercept)`` views.

        ``intercept`` is None when ``fit_intercept`` is False.
        """
        K, d = self.n_classes, self.n_features
        coef = w[: K * d].reshape(K, d)
        intercept = w[K * d :] if self.fit_intercept else None
        return coef, intercept

    def pack(self, coef, intercept):
        """Inverse of :meth:`unpack`: one flat float64 vector."""
        parts = [np.asarray(coef, dtype=np.float64).ravel()]
        if self.fit_intercept:
            parts.append(np.asarray(intercept, dtype=np.float64).ravel())
        return np.concatenate(parts)

    def _flat(self, grad_coef, grad_intercept):
        if self.fit_intercept:
            return np.concatenate([grad_coef.ravel(), grad_intercept])
        return grad_coef.ravel()

    def loss_gradient(self, w):
        """Objective and gradient at ``w``, ready for ``minimize(jac=True)``.

        Returns
        -------
        loss : float
        grad : ndarray of shape (n_params,), float64
        """
        coef, intercept = self.unpack(w)
        loss, grad_coef, grad_intercept = self.data.loss_gradient(coef, intercept)
        loss += self.penalty.value(coef)
        self.penalty.add_gradient(coef, grad_coef)
        return float(loss), self._flat(grad_coef, grad_intercept)

    def gradient(self, w):
        """Gradient at ``w`` (see :meth:`loss_gradient`)."""
        return self.loss_gradient(w)[1]

    def hessp(self, w, v):
        """Hessian of the objective at ``w`` times the direction ``v``."""
        return self.hessp_at(w)(v)

    def hessp_at(self, w, *, center=None, scale=None, inert=None):
        """:meth:`hessp` at ``w`` as a function of the direction alone: the products of one solve.

        With ``center`` and ``scale`` the direction and the product are in
        the coordinates ``(V, c)`` of the design rows ``[(x - center) /
        scale, 1]`` (``_backends._design``; ``_conditioning``'s), the
        features of the mask ``inert`` (zero design columns) moving nothing
        in the data term; the penalty's part is ``lambda V / scale^2`` for
        every feature. Through the backend's ``hessp_at`` where it has one
        (the protocol's optional member), which prepares what all products
        at one point share and copies the point; otherwise ``hessp`` at a
        copy of ``w``, the coordinates changed around it. Either way the
        products stay at ``w`` whatever becomes of its array.
        """
        bound = getattr(self.data, "hessp_at", None)
        if bound is not None and scale is None:
            data_product = bound(*self.unpack(w))
        elif bound is not None:
            data_product = bound(*self.unpack(w), center=center, scale=scale, inert=inert)
        else:
            coef, intercept = self.unpack(np.array(w, dtype=np.float64))

            def model_product(dir_coef, dir_intercept):
                return self.data.hessp(coef, intercept, dir_coef, dir_intercept)

            data_product = in_design_coordinates(model_product, center, scale, inert)

        # the penalty lambda ||W||^2 / 2 in (V, c): lambda V / scale^2 (the
        # factor only with a penalty: at C = inf a scale of 1e-300 squares to 0)
        in_design = scale is not None
        penalty_factor = 1.0 / np.square(scale) if in_design and self.penalty.l2_strength else None

        def product(v):
            dir_coef, dir_intercept = self.unpack(v)
            product_coef, product_intercept = data_product(dir_coef, dir_intercept)
            if not in_design:
                self.penalty.add_gradient(dir_coef, product_coef)
            elif penalty_factor is not None:
                self.penalty.add_gradient(dir_coef * penalty_factor, product_coef)
            return self._flat(product_coef, product_intercept)

        return product

    def loss_gradient_hessian(self, w, *, center, scale, budget=None, seed=0, dtype=np.float32):
        """:meth:`loss_gradient` with the data term's Hessian for ``[(x - center) / scale, 1]``.

        In one evaluation of the backend (one round on a cluster); the
        Hessian in ``dtype``, on a row sample of about ``budget`` rows when
        that is fewer than the rows (see the backend protocol). The penalty is
        in ``loss`` and ``grad``, not in the Hessian.
        """
        coef, intercept = self.unpack(w)
        loss, grad_coef, grad_intercept, hessian = self.data.loss_gradient_hessian(
            coef, intercept, center=center, scale=scale, budget=budget, seed=seed, dtype=dtype
        )
        loss += self.penalty.value(coef)
        self.penalty.add_gradient(coef, grad_coef)
        return float(loss), self._flat(grad_coef, grad_intercept), hessian

    def hessian(self, w, *, dtype=np.float64):
        """The full Hessian at ``w``, float64, in the upper triangle of a Fortran-ordered matrix.

        ``dtype`` is the precision of the data term's accumulation (float32:
        a preconditioner's accuracy). The strict lower triangle is not
        meaningful (take ``np.triu(H) + np.triu(H, 1).T``).
        """
        coef, intercept = self.unpack(w)
        hess = self.data.hessian(coef, intercept, dtype=dtype)
        hess = np.asarray(hess, dtype=np.float64, order="F")
        if self.penalty.l2_strength:
            diagonal = np.arange(self.n_classes * self.n_features)
            hess[diagonal, diagonal] += self.penalty.l2_strength
        return hess


def check_compressed(X):
    """Refuse a CSR/CSC matrix whose index arrays do not describe it (ValueError).

    scipy does not check them: an index past the shape reached numpy as an
    ``IndexError`` deep in the feature statistics, and went through scipy's
    products unchecked (``loss_gradient`` on a CSC matrix with a row index
    past its shape returned a finite number).
    """
    rows_of = X.format == "csr"
    outer, inner = X.shape if rows_of else X.shape[::-1]
    indptr, indices = X.indptr, X.indices
    if (
        indptr.shape != (outer + 1,)
        or indptr[0] != 0
        or indptr[-1] > indices.size
        or np.any(np.diff(indptr) < 0)
    ):
        raise ValueError(
            f"X is a malformed {X.format.upper()} matrix: its indptr must start at 0, not "
            f"decrease, have {outer + 1} entries and end within its {indices.size} indices."
        )
    stored = indices[: indptr[-1]]
    if stored.size and (stored.min() < 0 or stored.max() >= inner):
        what = "column" if rows_of else "row"
        raise ValueError(
            f"X is a malformed {X.format.upper()} matrix: its {what} indices must lie in "
            f"0..{inner - 1}; got {stored.min()}..{stored.max()}."
        )


def _check_kernel_inputs(coef, intercept, X, y, sample_weight, C):
    coef = np.asarray(coef, dtype=np.float64)
    if coef.ndim != 2:
        raise ValueError(
            f"coef must be 2-d of shape (n_classes, n_features); got shape {coef.shape}."
        )
    n_classes, n_features = coef.shape
    if n_classes < 2:
        raise ValueError(f"coef must have at least 2 rows (one per class); got {n_classes}.")
    if sp.issparse(X):
        X = X.tocsr() if X.format not in ("csr", "csc") else X
        check_compressed(X)
        values = X.data
    else:
        X = np.asarray(X)
        if X.dtype.kind == "O":
            X = X.astype(np.float64)  # numbers held as objects; a string raises
        values = X
    if values.dtype.kind not in "biuf":
        raise ValueError(f"X must hold real numbers; got dtype {values.dtype}.")
    if not np.all(np.isfinite(values)):
        raise ValueError("X contains NaN or infinity.")
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    if X.ndim != 2 or X.shape[1] != n_features:
        raise ValueError(
            f"X must be 2-d with {n_features} columns to match coef; got shape {X.shape}."
        )
    y = np.asarray(y)
    if y.shape != (X.shape[0],):
        raise ValueError(f"y must have shape ({X.shape[0]},); got {y.shape}.")
    if y.dtype.kind not in "iuf" or not np.all(np.mod(y, 1) == 0):
        raise ValueError(
            "y must hold integer class indices 0..n_classes-1 (encode labels first, "
            f"e.g. with np.unique(labels, return_inverse=True)); got dtype {y.dtype}."
        )
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"y must hold class indices in 0..{n_classes - 1}.")
    if intercept is not None:
        intercept = np.asarray(intercept, dtype=np.float64)
        if intercept.shape != (n_classes,):
            raise ValueError(f"intercept must have shape ({n_classes},); got {intercept.shape}.")
    if sample_weight is None:
        sample_weight = np.ones(X.shape[0])
    sample_weight = np.asarray(sample_weight, dtype=np.float64)
    if sample_weight.shape != (X.shape[0],):
        raise ValueError(
            f"sample_weight must have shape ({X.shape[0]},); got {sample_weight.shape}."
        )
    if not np.all(np.isfinite(sample_weight)) or np.any(sample_weight < 0):
        # the weights fit takes: a negative one makes the objective non-convex
        raise ValueError("sample_weight must be finite and non-negative.")
    if not (C > 0):
        raise ValueError(f"C must be positive (np.inf for no penalty); got {C!r}.")
    return coef, intercept, X, y.astype(np.intp), sample_weight


def loss_gradient(coef, intercept, X, y, *, sample_weight=None, C=1.0):
    """Objective and gradient of penalised multinomial logistic regression.

    Evaluates, for the model ``P = softmax(X coef^T + intercept)``,

    ``F = C * sum_i s_i * (-log P[i, y_i]) + 0.5 * ||coef||_F^2``

    and its gradient

    ``grad_coef = C * (P - Y)^T diag(s) X + coef``,
    ``grad_intercept = C * (P - Y)^T s``,

    where Y is the one-hot matrix of ``y`` and ``s`` the sample weights. The
    intercept is not penalised. ``C=np.inf`` drops the penalty and the factor
    C: ``F`` is then the weighted negative log-likelihood. This is the
    objective :class:`MultinomialLogitClassifier` minimises, computed by the
    same code.

    Parameters
    ----------
    coef : array-like of shape (n_classes, n_features)
        W, one row per class.
    intercept : array-like of shape (n_classes,) or None
        b; None for a model without intercept.
    X : {array-like, sparse matrix} of shape (n_samples, n_features)
        Data. Sparse matrices are not densified.
    y : array-like of shape (n_samples,)
        Class indices in ``0..n_classes-1``.
    sample_weight : array-like of shape (n_samples,), default=None
        Per-sample weights s, finite and non-negative (as ``fit`` takes
        them); None means all ones.
    C : float, default=1.0
        Inverse regularisation strength; ``np.inf`` for none.

    Returns
    -------
    loss : float
        F at ``(coef, intercept)``.
    grad_coef : ndarray of shape (n_classes, n_features)
        The gradient with respect to coef.
    grad_intercept : ndarray of shape (n_classes,) or None
        The gradient with respect to intercept (None when intercept is None).

    Examples
    --------
    With all-zero parameters every class has probability 1/K, so the loss is
    ``C * n * log K`` and the coef gradient is ``C * (1/K - Y)^T X``:

    >>> import numpy as np
    >>> from skmultilogit import loss_gradient
    >>> X = np.array([[1.0, 2.0], [3.0, 4.0]])
    >>> y = np.array([0, 1])
    >>> loss, grad_coef, grad_intercept = loss_gradient(np.zeros((2, 2)), np.zeros(2), X, y)
    >>> bool(np.isclose(loss, 2 * np.log(2)))
    True
    >>> grad_coef
    array([[ 1.,  1.],
           [-1., -1.]])
    >>> grad_intercept
    array([0., 0.])
    """
    coef, intercept, X, y, sample_weight = _check_kernel_inputs(
        coef, intercept, X, y, sample_weight, C
    )
    fit_intercept = intercept is not None
    loss = MultinomialLoss.from_arrays(
        X, y, coef.shape[0], sample_weight, C, fit_intercept=fit_intercept
    )
    f, grad = loss.loss_gradient(loss.pack(coef, intercept))
    grad_coef, grad_intercept = loss.unpack(grad)
    return f, grad_coef.copy(), None if grad_intercept is None else grad_intercept.copy()
