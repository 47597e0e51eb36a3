"""The Cholesky factor of a parameter Hessian, and solves with it, where the Hessian lives.

Newton's solvers precondition their conjugate-gradient steps (or solve
their steps) with ``A = H + diag(a) + c J``, the data term's Hessian ``H``
of the K (d + 1) parameters plus the penalty's (and any damping's)
diagonal ``a`` and, with an intercept, a constant ``c`` on the intercepts'
block ``J`` (see ``_solvers._preconditioners.Preconditioner``). Two
factorisers:

:data:`HOST`
    ``H`` in numpy (every in-memory and Dask fit): LAPACK's ``potrf`` of the
    upper triangle (the strict lower triangle of the backends' Hessians is
    not meaningful) in place, then two BLAS ``trsv`` per solve.
:class:`NamespaceCholesky`
    ``H`` an array of an array-API namespace on its device (fits on torch or
    CuPy arrays, ``_backends._array_api``): ``xp.linalg.cholesky`` there,
    ``A = L L^T``. The standard has no triangular solve, so the factor's
    inverse is formed once per factor (``xp.linalg.inv``, a general inverse:
    about 2 n^3 operations against the factorisation's n^3 / 3, on a device
    made for them) and a solve is two products on the device,
    ``A^-1 r = L^-T (L^-1 r)``. Only the K (d + 1) numbers of ``r`` and of
    the result cross to and from the host.

``factorise`` returns None where ``A`` is not numerically positive definite
(the caller adds a ridge and tries again).
"""

import sys

import numpy as np
from scipy.linalg import blas, lapack

from ._array_api import input_namespace, to_numpy, widest_float


def factoriser_for(hessian):
    """The factoriser of ``hessian``'s kind: :data:`HOST` for numpy, else its namespace's.

    A Hessian of another namespace comes only from a fit under
    ``array_api_dispatch``, where ``input_namespace`` names it.
    """
    namespace = None if isinstance(hessian, np.ndarray) else input_namespace(hessian)
    return HOST if namespace is None else NamespaceCholesky(*namespace)


class HostCholesky:
    """Cholesky factors of numpy Hessians by LAPACK, solves by BLAS (see the module docstring).

    Examples
    --------
    >>> import numpy as np
    >>> hessian = np.array([[4.0, 2.0], [0.0, 3.0]], order="F")  # upper triangle
    >>> factor = HOST.factorise(hessian, np.ones(2), 2, 0.0, np.float64)
    >>> HOST.solve(factor, np.array([5.0, 4.0])).round(12)  # [[5, 2], [2, 4]]^-1 [5, 4]
    array([0.75 , 0.625])
    """

    def factorise(
        self, data_hessian, diagonal, intercepts_from, intercept_shift, dtype, overwrite=False
    ):
        """The factor of ``data_hessian + diag(diagonal)``, plus ``intercept_shift`` on
        ``[intercepts_from:, intercepts_from:]``, in ``dtype``; None if not positive definite.

        With ``overwrite``, in ``data_hessian``'s own memory where it is a
        Fortran-ordered ``dtype`` matrix (a copy otherwise): then it holds
        the factor, or, where None is returned, a partial one.
        """
        dtype = np.dtype(dtype)
        if (
            overwrite
            and data_hessian.dtype == dtype
            and data_hessian.flags.f_contiguous
            and data_hessian.flags.writeable
        ):
            hessian = data_hessian
        else:
            hessian = np.array(data_hessian, dtype=dtype, order="F")
        on_diagonal = np.arange(hessian.shape[0])
        hessian[on_diagonal, on_diagonal] += diagonal
        if intercept_shift:
            hessian[intercepts_from:, intercepts_from:] += intercept_shift
        potrf = lapack.get_lapack_funcs("potrf", dtype=hessian.dtype)
        factor, info = potrf(hessian, lower=0, clean=0, overwrite_a=1)
        return factor if info == 0 else None

    def solve(self, factor, residual):
        """``A^-1 residual`` (float64) from ``A = U^T U``."""
        # Two BLAS trsv calls cost a third of LAPACK potrs's wrapper here.
        trsv = blas.get_blas_funcs("trsv", dtype=factor.dtype)
        return trsv(factor, trsv(factor, residual.astype(factor.dtype), trans=1)).astype(np.float64)

    def rescale(self, data_hessian, ratio):
        """``diag(ratio) H diag(ratio)``, in place."""
        ratio = ratio.astype(data_hessian.dtype)
        data_hessian *= ratio[:, None]
        data_hessian *= ratio
        return data_hessian

    def diagonal(self, data_hessian):
        """The diagonal of ``H``, as numpy float64."""
        return np.diag(data_hessian).astype(np.float64)


HOST = HostCholesky()


class NamespaceCholesky:
    """Cholesky factors of Hessians held in an array-API namespace, on their device.

    Parameters
    ----------
    xp : module
        The namespace (array-API compatible, as scikit-learn's
        ``get_namespace`` returns it).
    device : object
        The device the Hessian is on.

    Examples
    --------
    >>> import numpy as np
    >>> import array_api_strict as xp
    >>> linalg = NamespaceCholesky(xp, None)
    >>> hessian = xp.asarray([[4.0, 2.0], [2.0, 3.0]])
    >>> factor = linalg.factorise(hessian, np.ones(2), 2, 0.0, np.float64)
    >>> linalg.solve(factor, np.array([5.0, 4.0])).round(12)
    array([0.75 , 0.625])
    """

    def __init__(self, xp, device):
        self.xp = xp
        self.device = device

    def _float(self, dtype):
        # float64 where asked and the device has it (MPS has not: float32 there)
        if np.dtype(dtype) == np.float32:
            return self.xp.float32
        return widest_float(self.xp, self.device)

    def factorise(
        self, data_hessian, diagonal, intercepts_from, intercept_shift, dtype, overwrite=False
    ):
        """The inverse of the lower factor of ``A`` (as in ``HostCholesky.factorise``), or None.

        ``overwrite`` is ignored: ``A`` is formed in new memory, the inverse in more.
        """
        xp = self.xp
        float_dtype = self._float(dtype)
        size = data_hessian.shape[0]
        added = xp.asarray(np.asarray(diagonal), dtype=float_dtype, device=self.device)
        hessian = xp.astype(data_hessian, float_dtype, copy=True)
        # (the standard has no in-place update of a diagonal: one n x n term)
        on_diagonal = xp.eye(size, dtype=float_dtype, device=self.device)
        on_diagonal *= added
        hessian += on_diagonal
        del on_diagonal
        if intercept_shift:
            hessian[intercepts_from:, intercepts_from:] += intercept_shift
        try:
            lower = xp.linalg.cholesky(hessian)
        except _linalg_errors():
            return None
        del hessian
        # CuPy returns NaN instead of raising where A is not positive definite
        if not bool(xp.all(xp.isfinite(lower))):
            return None
        return xp.linalg.inv(lower)

    def solve(self, factor, residual):
        """``A^-1 residual`` (float64 numpy): ``L^-T (L^-1 residual)`` on the device."""
        xp = self.xp
        vector = xp.asarray(residual, dtype=factor.dtype, device=self.device)
        solved = xp.matmul(xp.matrix_transpose(factor), xp.matmul(factor, vector))
        return np.asarray(to_numpy(solved, xp), dtype=np.float64)

    def rescale(self, data_hessian, ratio):
        """``diag(ratio) H diag(ratio)`` (a new array)."""
        xp = self.xp
        ratio = xp.asarray(ratio, dtype=data_hessian.dtype, device=self.device)
        return data_hessian * ratio[:, None] * ratio[None, :]

    def diagonal(self, data_hessian):
        """The diagonal of ``H``, as numpy float64."""
        diagonal = self.xp.linalg.diagonal(data_hessian)
        return np.asarray(to_numpy(diagonal, self.xp), dtype=np.float64)


def _linalg_errors():
    """The exceptions a namespace's ``linalg.cholesky`` raises for a matrix not positive definite.

    numpy's (array-api-strict, CuPy under ``errstate(linalg="raise")``) and
    torch's, which is no subclass of it. Not RuntimeError at large: an
    out-of-memory error must not pass for a failed factorisation.
    """
    errors = [np.linalg.LinAlgError]
    torch = sys.modules.get("torch")
    if torch is not None:
        errors.append(torch.linalg.LinAlgError)
    return tuple(errors)


class KroneckerFactor:
    """Solves with ``M = A (x) G + I (x) diag(a) + s 1 1^T (x) e e^T`` block by block.

    The Hessian where every row has the same probabilities ``p`` (all
    coefficients zero) is ``A (x) G`` in the class-by-class order
    ``[coef_k, intercept_k]``: ``A = diag(p) - p p^T`` (K-square) and ``G``
    the m-square Gram matrix of the design rows (``_hessian.kronecker_hessian``).
    ``a`` (length m) is the penalty's diagonal, the same for every class,
    and ``s 1 1^T`` the intercepts' shift (see the module docstring) on the
    last coordinate ``e`` of each class (the intercept; ``s = 0`` without
    one).

    ``A 1 = 0``, so ``A`` and ``1 1^T`` commute and one orthogonal ``Q``
    diagonalises both: the eigenvectors of ``A + 1 1^T`` (the one along
    ``1`` has the eigenvalue K there, above every eigenvalue of ``A``, which
    are at most 1). With ``alpha_j = q_j^T A q_j`` and ``tau_j = (1^T q_j)^2``
    (K along 1, 0 across it), ``M`` is block diagonal in the rotated classes:
    ``M_j = alpha_j G + diag(a) + s tau_j e e^T``, K blocks of size m, each
    factored on its own. That is ``K m^3 / 3`` operations and K m^2 numbers
    instead of ``(K m)^3 / 3`` and ``(K m)^2``. A solve with the rows
    ``R`` (K, m) is ``Q [M_j^-1 (Q^T R)_j]_j``.

    Parameters
    ----------
    class_factor : ndarray of shape (K, K)
        ``A``, symmetric with ``A 1 = 0``.
    gram : ndarray of shape (m, m)
        ``G``, symmetric positive semidefinite.
    diagonal : ndarray of shape (m,)
        ``a``.
    intercept_shift : float
        ``s``, added on the last coordinate.

    The block along 1 is the classes' common shift of the coefficients,
    where the data have no curvature: its diagonal is raised to at least
    ``sqrt(eps)`` times the largest diagonal entry (:attr:`NULL_FLOOR`), so
    that a penalty below that (``C = inf``, or ``C`` of 1e8 and more) does
    not make the solve divide rounding by rounding.

    Raises ``numpy.linalg.LinAlgError`` where a block is not numerically
    positive definite, a pivot at most rounding (``eps`` times the largest
    diagonal entry) included: the caller adds a ridge, as for ``factorise``.

    Examples
    --------
    >>> import numpy as np
    >>> p = np.array([0.25, 0.75])
    >>> A = np.diag(p) - np.outer(p, p)
    >>> G = np.array([[2.0, 1.0], [1.0, 3.0]])
    >>> factor = KroneckerFactor(A, G, np.array([0.5, 0.0]), 0.5)
    >>> dense = np.kron(A, G) + np.diag([0.5, 0.0, 0.5, 0.0])
    >>> dense[np.ix_([1, 3], [1, 3])] += 0.5
    >>> rows = np.array([[1.0, 2.0], [3.0, 4.0]])
    >>> bool(np.allclose(factor.solve(rows).ravel(), np.linalg.solve(dense, rows.ravel())))
    True
    """

    # The block along 1 is the classes' common shift of the coefficients,
    # where the data have no curvature: its pivots are at least this share
    # of the largest diagonal entry (see __init__).
    NULL_FLOOR = float(np.sqrt(np.finfo(np.float64).eps))

    def __init__(self, class_factor, gram, diagonal, intercept_shift):
        _, self.rotation = np.linalg.eigh(class_factor + 1.0)
        alpha = np.einsum("kj,kl,lj->j", self.rotation, class_factor, self.rotation)
        tau = self.rotation.sum(axis=0) ** 2
        along_one = int(np.argmax(tau))
        # exactly 0 along 1 (A 1 = 0), not rounding's 1e-17 times G
        alpha[along_one] = 0.0
        blocks = alpha[:, None, None] * gram + np.diag(diagonal)
        if intercept_shift:
            blocks[:, -1, -1] += intercept_shift * tau
        size = float(np.max(np.abs(np.diagonal(blocks, axis1=1, axis2=2))))
        # Along the common shift only the penalty curves the objective, and
        # at C = inf or C >= ~1e8 it is below rounding's level for this
        # purpose: the residual's rounding there, divided by such a pivot,
        # swamped the solve (a closely solved polish step failed at C = inf,
        # 2.6e-6 from the optimum). The exact gradient has (almost) nothing
        # there, so a floor of sqrt(eps) costs nothing; float32's dense
        # factor had its rounding, about 1e-7, there.
        pivots = np.einsum("ii->i", blocks[along_one])
        np.maximum(pivots, self.NULL_FLOOR * size, out=pivots)
        # Each block's inverse from its factor (LAPACK potrf, potri), in
        # place of the block: a solve is then one batched product, where
        # triangular solves are one matrix at a time. The block along 1 is
        # diagonal (no G there; the shift is on the intercept's entry).
        eps = float(np.finfo(np.float64).eps)
        for index, block in enumerate(blocks):
            if index == along_one:
                self._invert_diagonal(block, eps * size)
                continue
            factor, info = lapack.dpotrf(block, lower=0, clean=1)
            # A pivot at rounding's level is no curvature (a penalty of
            # 1e-303, C = 1e300, where collinear columns leave the data
            # none): its inverse would send the step to 1e300. Refused as not
            # positive definite, as float32's factor refused it by rounding
            # the penalty to zero; the caller's ridge then takes its place.
            if info != 0 or np.min(np.diag(factor)) ** 2 <= eps * size:
                raise np.linalg.LinAlgError("a block is not numerically positive definite")
            upper, _ = lapack.dpotri(factor, lower=0, overwrite_c=1)
            block[...] = np.triu(upper) + np.triu(upper, 1).T
        self.inverse = blocks

    @staticmethod
    def _invert_diagonal(block, tiny):
        """Invert, in place, a diagonal block (the one along 1); refuse a pivot up to ``tiny``."""
        diagonal = np.diag(block).copy()
        if np.min(diagonal) <= tiny:
            raise np.linalg.LinAlgError("a block is not numerically positive definite")
        block[...] = np.diag(1.0 / diagonal)

    def solve(self, rows):
        """``M^-1`` applied to the rows ``R`` (K, m), float64."""
        rotated = self.rotation.T @ rows
        solved = np.matmul(self.inverse, rotated[:, :, None])[:, :, 0]
        return self.rotation @ solved
