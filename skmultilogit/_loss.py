"""The multinomial logistic loss: objective, gradient and Hessian-vector product.

Pure array math. This module knows nothing of scikit-learn estimators or of
``scipy.optimize``; the solvers and the estimator are built on top of it.

Notation
--------
``n`` samples, ``d`` features, ``K`` classes. ``X`` is (n, d), dense or scipy
sparse CSR/CSC. ``coef`` W is (K, d), one row per class (symmetric
parametrisation: every class has a weight vector), ``intercept`` b is (K,).
``y`` holds class indices ``0..K-1`` and Y is its (n, K) one-hot matrix.
``s`` is the (n,) vector of sample weights (already multiplied by any class
weights).

.. math::

    Z &= X W^\\top + \\mathbf{1} b^\\top
         \\qquad \\text{(raw prediction, } n \\times K) \\\\
    P_{ik} &= e^{Z_{ik}} / \\textstyle\\sum_j e^{Z_{ij}}
         \\qquad \\text{(row-wise softmax)} \\\\
    F(W, b) &= C \\sum_i s_i \\, (-\\log P_{i, y_i}) + \\tfrac12 \\lVert W \\rVert_F^2 \\\\
    \\nabla_W F &= C \\, (P - Y)^\\top \\operatorname{diag}(s) X + W \\qquad
    \\nabla_b F = C \\, (P - Y)^\\top s

The intercept is not penalised. ``C = inf`` means no penalty: the objective
is then the weighted negative log-likelihood ``sum_i s_i (-log P[i, y_i])``.

The Hessian, taken per sample with respect to the logits ``z_i``, is
``C s_i (diag(p_i) - p_i p_i^T)`` (the softmax Jacobian). Its product with a
direction ``(V, c)`` of the same shapes as ``(W, b)`` is

.. math::

    U &= X V^\\top + \\mathbf{1} c^\\top \\\\
    R &= C \\operatorname{diag}(s) \\bigl(P \\odot U - P \\odot
         (\\operatorname{rowsum}(P \\odot U) \\mathbf{1}^\\top)\\bigr) \\\\
    (H \\cdot V)_W &= R^\\top X + V \\qquad (H \\cdot V)_b = R^\\top \\mathbf{1}

Numerics: the row maximum is subtracted from Z before any ``exp`` and
``-log P[i, y_i]`` is computed as ``logsumexp(z_i) - z_{i, y_i}`` (the
log-softmax), so neither overflows nor loses precision when probabilities
underflow. Sparse X is never densified. The matrix products run in X's dtype
(float32 stays float32); the n x K element-wise work and the loss sum are
done in float64, which costs little (K is small next to d) and keeps the
objective smooth enough for line searches down to float64 tolerances.

Loss and gradient are sums over rows of X: a row block's contribution can be
computed independently and added, which is what every later layer reuses.
"""

import numpy as np
import scipy.sparse as sp
from scipy.linalg import blas

__all__ = ["loss_gradient", "log_softmax", "softmax", "MultinomialLoss"]

# Bytes of dense X evaluated per row block, and the fewest rows in a block
# (see MultinomialLoss._row_blocks).
BLOCK_BYTES = 1 << 22
MIN_BLOCK_ROWS = 2048


def log_softmax(raw_prediction):
    """Row-wise log-softmax, computed without overflow or underflow.

    Parameters
    ----------
    raw_prediction : ndarray of shape (n_samples, n_classes)
        The logits Z.

    Returns
    -------
    log_proba : ndarray of shape (n_samples, n_classes)
        ``Z - logsumexp(Z, axis=1)``, in float64 unless Z is float32.

    Examples
    --------
    >>> import numpy as np
    >>> from skmultilogit import log_softmax
    >>> log_softmax(np.array([[0.0, 1000.0]])).round(3)
    array([[-1000.,     0.]])
    """
    raw_prediction = np.asarray(raw_prediction)
    if raw_prediction.dtype not in (np.float32, np.float64):
        raw_prediction = raw_prediction.astype(np.float64)
    shifted = raw_prediction - raw_prediction.max(axis=1, keepdims=True)
    shifted -= np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return shifted


def softmax(raw_prediction):
    """Row-wise softmax, ``exp(z_ik) / sum_j exp(z_ij)``, without overflow.

    Parameters
    ----------
    raw_prediction : ndarray of shape (n_samples, n_classes)
        The logits Z.

    Returns
    -------
    proba : ndarray of shape (n_samples, n_classes)
        Rows are non-negative and sum to one.

    Examples
    --------
    >>> import numpy as np
    >>> from skmultilogit import softmax
    >>> softmax(np.array([[0.0, np.log(3.0)]]))
    array([[0.25, 0.75]])
    """
    raw_prediction = np.asarray(raw_prediction)
    if raw_prediction.dtype not in (np.float32, np.float64):
        raw_prediction = raw_prediction.astype(np.float64)
    proba = raw_prediction - raw_prediction.max(axis=1, keepdims=True)
    np.exp(proba, out=proba)
    proba /= proba.sum(axis=1, keepdims=True)
    return proba


def _softmax_class_major(raw):
    """Softmax over axis 0 of class-major logits (K, n), in place."""
    raw -= raw.max(axis=0)
    np.exp(raw, out=raw)
    raw /= raw.sum(axis=0)
    return raw


def _rmatmul(X, R, X_T=None):
    """``R^T X`` as a C-ordered (K, d) array, for dense or sparse X.

    ``X_T`` may pass a sparse X's transpose, built once: constructing the
    transposed matrix object costs as much as a small product.
    """
    if sp.issparse(X):
        # (X^T R)^T: X^T of a CSR is a CSC (and vice versa) without a copy,
        # and sparse @ dense returns a dense array.
        return np.ascontiguousarray(((X.T if X_T is None else X_T) @ R).T)
    return R.T @ X


class MultinomialLoss:
    """The penalised multinomial logistic objective on fixed data.

    Holds ``X``, ``y``, the sample weights and ``C``, and evaluates the
    objective ``F`` of the module docstring, its gradient and its
    Hessian-vector product at any ``(coef, intercept)``. Parameters are passed
    as one flat float64 vector ``w = [coef.ravel(), intercept]`` (coef in C
    order, so ``w[:K*d].reshape(K, d)`` is a view), which is what
    ``scipy.optimize.minimize`` works with.

    Parameters
    ----------
    X : {ndarray, sparse matrix} of shape (n_samples, n_features)
        float32 or float64; sparse input must be CSR or CSC.
    y : ndarray of shape (n_samples,)
        Class indices in ``0..n_classes-1``.
    n_classes : int
        K, at least 2.
    sample_weight : ndarray of shape (n_samples,)
        Non-negative weights ``s`` (sample weight times class weight).
    C : float, default=1.0
        Inverse penalty strength; ``np.inf`` for no penalty.
    fit_intercept : bool, default=True
        Whether ``w`` ends with K intercepts.
    normalize : bool, default=False
        If True, evaluate ``F / (C * sum(s))`` (``F / sum(s)`` when
        ``C = inf``): the mean weighted loss plus ``||W||^2 / (2 C sum(s))``.
        Solvers use this so that gradients are of order one whatever the
        number of samples; the minimiser is the same. The factors are formed
        without the product ``C * sum(s)``, which overflows for huge C.
    l1_ratio : float, default=0.0
        Elastic-net mixing ``alpha`` in ``[0, 1]``: the penalty becomes
        ``alpha ||W||_1 + (1 - alpha) / 2 ||W||^2``. Only the smooth part is
        evaluated here (data term and ``(1 - alpha) / 2 ||W||^2``);
        :attr:`l1_strength` gives the factor of ``||W||_1`` for the solver,
        which handles the non-smooth part (see ``_solvers.L1SplitProblem``).

    Examples
    --------
    >>> import numpy as np
    >>> from skmultilogit._loss import MultinomialLoss
    >>> X = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    >>> loss = MultinomialLoss(X, np.array([0, 1, 2]), 3, np.ones(3))
    >>> f, g = loss.loss_gradient(np.zeros(loss.n_params))
    >>> bool(np.isclose(f, 3 * np.log(3)))
    True
    """

    def __init__(
        self,
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
        self.X = X
        self.y = np.asarray(y, dtype=np.intp)
        self.n_classes = int(n_classes)
        self.sample_weight = np.asarray(sample_weight, dtype=np.float64)
        self.C = float(C)
        self.fit_intercept = bool(fit_intercept)
        self.normalize = bool(normalize)
        self.n_features = X.shape[1]
        self._rows = np.arange(X.shape[0])
        # sparse X is one row block (see _row_blocks), so one transpose serves
        self._X_T = X.T if sp.issparse(X) else None
        self.l1_ratio = float(l1_ratio)
        no_penalty = np.isinf(self.C)
        if self.normalize:
            total = self.sample_weight.sum()
            # Per-sample factor of the data term, and factor of the penalty.
            self._weight = self.sample_weight / total
            penalty = 0.0 if no_penalty else (1.0 / self.C) / total
        else:
            self._weight = self.sample_weight if no_penalty else self.C * self.sample_weight
            penalty = 0.0 if no_penalty else 1.0
        # Factors of 1/2 ||W||^2 and of ||W||_1.
        self._penalty = (1.0 - self.l1_ratio) * penalty
        self._l1_penalty = self.l1_ratio * penalty
        self._hess_cache = None

    @property
    def penalty_strength(self):
        """Factor of ``1/2 ||W||^2`` in the evaluated objective (0 without penalty)."""
        return self._penalty

    @property
    def l1_strength(self):
        """Factor of ``||W||_1`` in the objective, not evaluated by this class (0 for L2)."""
        return self._l1_penalty

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

    def _row_blocks(self):
        """Row ranges evaluated together.

        A block of dense X is small enough to stay in cache between the
        forward product and the gradient product, and its n_block x K logits
        stay in cache through the element-wise work in between: streaming the
        whole n x K arrays through memory for each element-wise step cost as
        much again as the two products. Blocks are also small enough that the
        few n_block x K float64 temporaries cost little memory next to X
        (they dominated a fit's peak on float32 data with few features).
        Sparse X is taken whole, since a row slice of a sparse matrix is a
        copy.
        """
        n_samples = self.X.shape[0]
        if sp.issparse(self.X):
            return [slice(0, n_samples)]
        step = min(
            BLOCK_BYTES // max(1, self.n_features * self.X.itemsize),
            # the float64 n_block x K temporaries stay a fraction of that
            (BLOCK_BYTES // 64) // (8 * self.n_classes),
        )
        step = max(MIN_BLOCK_ROWS, step)
        return [slice(start, start + step) for start in range(0, n_samples, step)]

    def _block_raw(self, X_block, coef_x, intercept):
        """Logits of a block, (n_block, K), in float64 (the product runs in X's dtype)."""
        raw = np.asarray(X_block @ coef_x.T).astype(np.float64, copy=False)
        if intercept is not None:
            raw += intercept
        return raw

    def _block_logits(self, X_block, coef_x, intercept):
        """Logits of a block class-major, ``Z^T = W X^T + b``: (K, n_block), float64.

        C-ordered for dense X; for sparse X a Fortran-ordered view.

        The loss, gradient and Hessian products work on the logits in this
        layout: the sums and maxima over classes then run along the long,
        contiguous axis, where over (n_block, K) rows of K = 10 numbers
        they cost numpy as much as the exp itself (the element-wise work
        took a third less time on the 8x8 digits in this layout).
        """
        if sp.issparse(X_block):
            # sparse @ dense gives (n_block, K): its transpose is a Fortran-ordered
            # view, kept as it is (a C-ordered copy would cost n x K more memory)
            raw = np.asarray(X_block @ coef_x.T).astype(np.float64, copy=False).T
        else:
            raw = (coef_x @ X_block.T).astype(np.float64, copy=False)
        if intercept is not None:
            raw += intercept[:, None]
        return raw

    def _block_residual_loss(self, raw, rows):
        """Turn a block's class-major logits into ``(P - Y)^T diag(weight)`` in place.

        Returns the block's data term.
        """
        raw -= raw.max(axis=0)
        n_block = raw.shape[1]
        # flat positions of Z^T[y_i, i] in memory (a view, never a copy)
        if raw.flags.c_contiguous:
            true_class = self.y[rows] * n_block + self._rows[:n_block]
            flat = raw.reshape(-1)
        else:
            true_class = self._rows[:n_block] * self.n_classes + self.y[rows]
            flat = raw.T.reshape(-1)
        raw_true = flat.take(true_class)
        np.exp(raw, out=raw)
        sum_exp = raw.sum(axis=0)
        weight = self._weight[rows]
        # one pass for both the normalisation and the weights
        raw *= weight / sum_exp
        flat[true_class] -= weight
        # -log P[i, y_i] = logsumexp(z_i) - z_{i, y_i}, never log of a P.
        return weight @ (np.log(sum_exp) - raw_true)

    def _finish_gradient(self, coef, grad_coef, grad_intercept):
        """Add the penalty's part and flatten."""
        if self._penalty:
            grad_coef += self._penalty * coef
        if self.fit_intercept:
            return np.concatenate([grad_coef.ravel(), grad_intercept])
        return grad_coef.ravel()

    def _accumulate(self, X_block, residual, grad_coef, grad_intercept):
        """Add a block's ``R^T X`` and ``R^T 1`` (``residual`` is ``R^T``, class-major).

        Sums across blocks in float64.
        """
        residual_x = residual.astype(self.X.dtype, copy=False)
        if sp.issparse(X_block):
            grad_coef += _rmatmul(X_block, residual_x.T, self._X_T)
        else:
            grad_coef += residual_x @ X_block
        grad_intercept += residual.sum(axis=1)

    def _proba(self, w):
        """Softmax probabilities at ``w``, class-major (n_classes, n_samples), in X's dtype.

        float32 X keeps them in float32: the Hessian products they feed run
        in float32 anyway, and n x K floats can be a sizeable part of X.
        """
        coef, intercept = self.unpack(w)
        coef_x = coef.astype(self.X.dtype, copy=False)
        proba = np.empty((self.n_classes, self.X.shape[0]), dtype=self.X.dtype)
        for rows in self._row_blocks():
            proba[:, rows] = _softmax_class_major(
                self._block_logits(self.X[rows], coef_x, intercept)
            )
        return proba

    def loss_gradient(self, w):
        """Objective and gradient at ``w``, ready for ``minimize(jac=True)``.

        Returns
        -------
        loss : float
        grad : ndarray of shape (n_params,), float64
        """
        coef, intercept = self.unpack(w)
        coef_x = coef.astype(self.X.dtype, copy=False)
        grad_coef = np.zeros((self.n_classes, self.n_features))
        grad_intercept = np.zeros(self.n_classes)
        data_loss = 0.0
        for rows in self._row_blocks():
            X_block = self.X[rows]
            residual = self._block_logits(X_block, coef_x, intercept)
            data_loss += self._block_residual_loss(residual, rows)
            self._accumulate(X_block, residual, grad_coef, grad_intercept)
        if self._penalty:
            # (skipped at 0: coefficients of 1e160, the unpenalised fit on
            # features of 1e-160, would make it 0 * inf)
            data_loss += 0.5 * self._penalty * (coef.ravel() @ coef.ravel())
        loss = float(data_loss)
        return loss, self._finish_gradient(coef, grad_coef, grad_intercept)

    def gradient(self, w):
        """Gradient at ``w`` (see :meth:`loss_gradient`)."""
        return self.loss_gradient(w)[1]

    def curvature(self, w):
        """Per-sample size of the Hessian's data term: ``omega_i (1 - ||p_i||^2)``.

        The trace of ``omega_i (diag(p_i) - p_i p_i^T)``, the factor by which
        sample i enters the Hessian (see :meth:`hessian`); near 0 for a
        sample classified with confidence. Computed block by block, so no
        n x K array is kept.
        """
        coef, intercept = self.unpack(w)
        coef_x = coef.astype(self.X.dtype, copy=False)
        curvature = np.empty(self.X.shape[0])
        for rows in self._row_blocks():
            proba = _softmax_class_major(self._block_logits(self.X[rows], coef_x, intercept))
            curvature[rows] = 1.0 - np.einsum("ki,ki->i", proba, proba)
        curvature *= self._weight
        return curvature

    def hessp(self, w, v):
        """Hessian of the objective at ``w`` times the direction ``v``.

        The probabilities at ``w`` are kept between calls, so a sequence of
        products at one point (as in a conjugate-gradient inner solve) costs
        two matrix products each.
        """
        if self._hess_cache is None or not np.array_equal(self._hess_cache[0], w):
            self._hess_cache = (np.array(w, copy=True), self._proba(w))
        proba = self._hess_cache[1]
        dir_coef, dir_intercept = self.unpack(v)
        dir_x = dir_coef.astype(self.X.dtype, copy=False)
        grad_coef = np.zeros((self.n_classes, self.n_features))
        grad_intercept = np.zeros(self.n_classes)
        for rows in self._row_blocks():
            X_block, proba_block = self.X[rows], proba[:, rows]
            # U = X V^T + c, then R = weight * (P*U - P * rowsum(P*U)); this order
            # kept trust-ncg converging on float32 data where P * (U - rowsum) did not.
            # Class-major, as in loss_gradient.
            residual = self._block_logits(X_block, dir_x, dir_intercept)
            residual *= proba_block
            residual -= proba_block * residual.sum(axis=0)
            residual *= self._weight[rows]
            self._accumulate(X_block, residual, grad_coef, grad_intercept)
        return self._finish_gradient(dir_coef, grad_coef, grad_intercept)

    def hessian(
        self,
        w,
        *,
        center=None,
        scale=None,
        rows=None,
        row_factor=None,
        dtype=np.float64,
        block_rows=256,
        include_penalty=True,
        return_dtype=np.float64,
    ):
        """The full Hessian at ``w``, upper triangle, for features seen as ``(x - center) / scale``.

        With ``center = 0`` and ``scale = 1`` (the defaults) this is the
        Hessian of the objective in the flat parameters ``w``. In general it
        is the Hessian with respect to ``(V, c)`` in the reparametrisation
        ``W = V diag(scale)^-1``, ``b = c - W center``, under which
        ``X W^T + b = ((X - center) / scale) V^T + c`` (the solvers'
        conditioned coordinates). Writing ``x^_i = [(x_i - center) / scale, 1]``
        (the 1 only with an intercept) and ``p_i`` for the probabilities at
        ``w``,

        .. math::

            H = \\sum_i \\omega_i \\, (\\operatorname{diag}(p_i) - p_i p_i^\\top)
                \\otimes \\hat x_i \\hat x_i^\\top
                + \\lambda \\operatorname{diag}(\\text{scale}^{-2})
                \\text{ on the } V \\text{ block}

        with the per-sample factors ``omega`` and penalty ``lambda`` of the
        evaluated objective, ordered as ``w`` is (all coefficients class by
        class, then the intercepts). It is accumulated over row blocks as
        ``diag(omega p_k)``-weighted Gram matrices for the ``diag(p)`` part
        and one rank-update ``-B^T B`` with rows ``sqrt(omega_i) p_i (x) x^_i``
        for the ``p p^T`` part: ``n K^2 (d + 1)^2 / 2`` multiply-adds.
        When every coefficient is zero all rows share ``p = softmax(b)`` and
        the data part is the Kronecker product ``(diag(p) - p p^T) (x)
        sum_i omega_i x^_i x^_i^T``, which costs ``n (d + 1)^2``.

        Parameters
        ----------
        w : ndarray of shape (n_params,)
            The point, in the original parameters.
        center, scale : ndarray of shape (n_features,), optional
            The feature transform (defaults 0 and 1).
        rows : ndarray of int, optional
            Evaluate the data term on these rows only (a sub-sampled
            Hessian); default all rows.
        row_factor : ndarray of shape (len(rows),), optional
            Multiplies the per-sample factors of ``rows``: inverse inclusion
            probabilities make the sub-sampled sum an unbiased estimate of
            the full one. Default 1.
        dtype : {np.float64, np.float32}
            Precision of the accumulation; float32 is about a third faster
            and ample for a preconditioner.
        block_rows : int
            Rows densified and transformed at a time.
        include_penalty : bool
            Whether to add the penalty's ``lambda diag(scale^-2)``; without
            it, the data term alone (which along a path of C values does not
            depend on C, see ``normalize``).
        return_dtype : {np.float64, np.float32}
            dtype of the returned matrix; float32 with ``dtype=np.float32``
            returns the accumulation itself, without a float64 copy.

        Returns
        -------
        hessian : ndarray of shape (n_params, n_params), Fortran order
            The upper triangle holds the Hessian; the strict lower triangle
            is not meaningful (take ``np.triu(H) + np.triu(H, 1).T``).
        """
        K, d = self.n_classes, self.n_features
        n_coef = K * d
        n_params = self.n_params
        center = np.zeros(d) if center is None else np.asarray(center, dtype=np.float64)
        scale = np.ones(d) if scale is None else np.asarray(scale, dtype=np.float64)
        if rows is None:
            rows = np.arange(self.X.shape[0])
            weight = self._weight
        else:
            rows = np.asarray(rows, dtype=np.intp)
            weight = self._weight[rows]
            if row_factor is not None:
                weight = weight * row_factor
        coef, intercept = self.unpack(w)
        blocks = [slice(start, start + block_rows) for start in range(0, rows.size, block_rows)]
        hess = np.zeros((n_params, n_params), dtype=dtype, order="F")

        def transformed(block):
            X_block = self.X[rows[block]]
            if sp.issparse(X_block):
                X_block = X_block.toarray()
            return X_block, (X_block - center) / scale

        if not coef.any():
            # Every row has p = softmax(b): the Kronecker form.
            proba = softmax((np.zeros(K) if intercept is None else intercept)[None, :])[0]
            curvature = np.diag(proba) - np.outer(proba, proba)
            gram = np.zeros((d + 1, d + 1))
            for block in blocks:
                X_hat = transformed(block)[1]
                weighted = weight[block, None] * X_hat
                gram[:d, :d] += X_hat.T @ weighted
                gram[:d, d] += weighted.sum(axis=0)
                gram[d, d] += weight[block].sum()
            hess[:n_coef, :n_coef] = np.kron(curvature, gram[:d, :d])
            if self.fit_intercept:
                hess[:n_coef, n_coef:] = np.kron(curvature, gram[:d, d : d + 1])
                hess[n_coef:, n_coef:] = curvature * gram[d, d]
        else:
            syrk = blas.ssyrk if dtype == np.float32 else blas.dsyrk
            for block in blocks:
                X_block, X_hat = transformed(block)
                proba = softmax(self._block_raw(X_block, coef.astype(X_block.dtype), intercept))
                weighted_proba = (weight[block, None] * proba).astype(dtype)
                root_proba = np.sqrt(weight[block])[:, None] * proba
                X_hat = X_hat.astype(dtype, copy=False)
                m = X_hat.shape[0]
                outer = np.empty((m, n_params), dtype=dtype, order="F")
                root_proba = root_proba.astype(dtype)
                np.multiply(
                    root_proba[:, :, None],
                    X_hat[:, None, :],
                    out=outer[:, :n_coef].reshape(m, K, d),
                )
                outer[:, n_coef:] = root_proba[:, : n_params - n_coef]
                hess = syrk(-1.0, outer, beta=1.0, c=hess, trans=1, lower=0, overwrite_c=1)
                for k in range(K):
                    block_k = slice(k * d, (k + 1) * d)
                    weighted = weighted_proba[:, k, None] * X_hat
                    hess[block_k, block_k] += X_hat.T @ weighted
                    if self.fit_intercept:
                        hess[block_k, n_coef + k] += weighted.sum(axis=0)
                        hess[n_coef + k, n_coef + k] += weighted_proba[:, k].sum()
        hess = np.asarray(hess, dtype=return_dtype, order="F")
        if self._penalty and include_penalty:
            diagonal = np.arange(n_coef)
            hess[diagonal, diagonal] += self._penalty / np.tile(scale**2, K)
        return hess


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
        if X.dtype not in (np.float32, np.float64):
            X = X.astype(np.float64)
    else:
        X = np.asarray(X)
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
        Per-sample weights s; None means all ones.
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
    loss = MultinomialLoss(X, y, coef.shape[0], sample_weight, C, fit_intercept=fit_intercept)
    f, grad = loss.loss_gradient(loss.pack(coef, intercept))
    grad_coef, grad_intercept = loss.unpack(grad)
    return f, grad_coef.copy(), None if grad_intercept is None else grad_intercept.copy()
