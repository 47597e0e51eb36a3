"""The array-API backend: X as an array of any array-API namespace, on its device.

The n x K work and the matrix products of the data term run in X's
namespace and on its device (a GPU with PyTorch or CuPy); the solvers keep
the parameter vector in numpy, as scikit-learn's array-API estimators keep
scipy's optimiser, so each evaluation moves the K x (d + 1) parameters to the
device and its gradient (or Hessian product) back. newton-cholesky's
K (d + 1)-square Hessian stays on the device and is factored there
(``_cholesky.NamespaceCholesky``). The math is ``_loss``'s (see its
docstring for the formulas), written with the standard's functions.
"""

import copy

import numpy as np

from .._array_api import numpy_dtype, softmax, to_numpy, widest_float
from ._proba_cache import cached_proba
from ._sampled import sampled_loss_gradient_hessian

# Rows per block of a Hessian pass: its (rows, K (d + 1)) temporary stays
# below 2**23 numbers.
HESSIAN_BLOCK_NUMBERS = 1 << 23

# Numbers per row block of the feature statistics: each block's float64 copy
# and its temporaries on the device.
STATS_BLOCK_NUMBERS = 1 << 23


class ArrayAPIBackend:
    """The data term on an array-API X held on one device.

    Implements the backend protocol of ``skmultilogit._backends``.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
        float32 or float64, of the namespace ``xp``.
    y : ndarray of shape (n_samples,)
        Class indices in ``0..n_classes-1`` (numpy; moved to the device).
    n_classes : int
    sample_weight : ndarray of shape (n_samples,)
        Per-sample factors s (numpy, float64).
    xp : module
        X's array-API namespace; ``device``, X's device.
    """

    passes_are_rounds = False
    # the Gram matrix would be formed and factored on the host: the
    # preconditioner at zero coefficients is built on the device instead
    gram = None
    newton_by_default = True
    sparse = False

    def __init__(self, X, y, n_classes, sample_weight, xp, device):
        self.X = X
        self.xp = xp
        self.device = device
        self.namespace = (xp, device)
        self.n_classes = int(n_classes)
        self.n_samples, self.n_features = X.shape
        self.dtype = numpy_dtype(X.dtype, xp)
        self.y = np.asarray(y, dtype=np.intp)
        self.sample_weight = np.asarray(sample_weight, dtype=np.float64)
        self.total_weight = float(self.sample_weight.sum())
        self.stored_entries = self.n_samples * self.n_features
        # float64 where the device has it (each row's loss term and their sum;
        # a float64 Hessian), else float32
        self._widest_float = widest_float(xp, device)
        self._y_onehot = xp.asarray(
            self.y[:, None] == np.arange(self.n_classes), dtype=X.dtype, device=device
        )
        self._set_weight(self.sample_weight)
        self._proba_cache = None

    def _set_weight(self, weight):
        self.weight = weight
        self._weight = self.xp.asarray(weight, dtype=self.X.dtype, device=self.device)
        self._loss_weight = (
            self._weight
            if self._widest_float == self.X.dtype
            else self.xp.asarray(weight, dtype=self._widest_float, device=self.device)
        )

    def rows(self, index):
        """A backend on the rows ``index`` of this one (a cross-validation fold), on the device."""
        index = np.asarray(index, dtype=np.intp)
        taken = self.xp.take(self.X, self.xp.asarray(index, device=self.device), axis=0)
        return ArrayAPIBackend(
            taken, self.y[index], self.n_classes, self.sample_weight[index], self.xp, self.device
        )

    def with_factor(self, multiplier=1.0, divisor=1.0):
        """The same data with per-sample factors ``s * multiplier / divisor``."""
        scaled = copy.copy(self)
        scaled._set_weight(self.sample_weight * (multiplier / divisor))
        scaled._proba_cache = None
        return scaled

    def _on_device(self, array):
        return self.xp.asarray(np.asarray(array), dtype=self.X.dtype, device=self.device)

    def _to_numpy(self, array):
        return np.asarray(to_numpy(array, self.xp), dtype=np.float64)

    def _logits(self, coef, intercept, X=None):
        """``X coef^T + intercept`` on the device (X: this backend's unless given)."""
        X = self.X if X is None else X
        raw = X @ self.xp.permute_dims(self._on_device(coef), (1, 0))
        if intercept is not None:
            raw = raw + self._on_device(intercept)
        return raw

    def loss_gradient(self, coef, intercept):
        """The data term and its gradient (see the backend protocol)."""
        xp = self.xp
        raw = self._logits(coef, intercept)
        shifted = raw - xp.max(raw, axis=1, keepdims=True)
        exps = xp.exp(shifted)
        total = xp.sum(exps, axis=1)
        true_logit = xp.sum(shifted * self._y_onehot, axis=1)
        # -log P[i, y_i] = log sum exp - z_{i, y_i}: the n x K work in X's
        # dtype, each row's term and their sum in float64 (where the device
        # has it), as in the numpy backend: a float32 sum of n terms loses
        # the loss's last digits, which the solvers' stopping rules compare
        wide = self._widest_float
        row_loss = xp.log(xp.astype(total, wide)) - xp.astype(true_logit, wide)
        loss = xp.sum(self._loss_weight * row_loss)
        residual = (exps / total[:, None] - self._y_onehot) * self._weight[:, None]
        grad_coef = xp.permute_dims(residual, (1, 0)) @ self.X
        grad_intercept = xp.sum(residual, axis=0)
        return (
            float(self._to_numpy(loss)),
            self._to_numpy(grad_coef),
            self._to_numpy(grad_intercept),
        )

    def _proba(self, coef, intercept):
        """Softmax probabilities (n, K) on the device."""
        return softmax(self._logits(coef, intercept), self.xp)

    def hessp(self, coef, intercept, dir_coef, dir_intercept):
        """The data term's Hessian times ``(dir_coef, dir_intercept)``."""
        xp = self.xp
        proba = cached_proba(self, coef, intercept)
        direction = self._logits(dir_coef, None if intercept is None else dir_intercept)
        weighted = proba * direction
        residual = weighted - proba * xp.sum(weighted, axis=1, keepdims=True)
        residual = residual * self._weight[:, None]
        product_coef = xp.permute_dims(residual, (1, 0)) @ self.X
        return self._to_numpy(product_coef), self._to_numpy(xp.sum(residual, axis=0))

    def curvature(self, coef, intercept):
        """``omega_i (1 - ||p_i||^2)`` for every row, as numpy."""
        xp = self.xp
        proba = self._proba(coef, intercept)
        return self._to_numpy(self._weight * (1.0 - xp.sum(proba * proba, axis=1)))

    def hessian(
        self,
        coef,
        intercept,
        *,
        center=None,
        scale=None,
        rows=None,
        row_factor=None,
        dtype=np.float64,
        on_device=False,
        omit=0.0,
        out=None,
    ):
        """The data term's Hessian for the design rows ``[(x - center) / scale, 1]``.

        As ``NumpyBackend.hessian``: (n_params, n_params), Fortran-ordered
        numpy in ``dtype``, ordered as the flat parameters (all coefficients
        class by class, then the intercepts); with ``on_device``, the
        symmetric array in X's namespace, on its device, for
        ``_cholesky.NamespaceCholesky`` to factor there; whole whatever
        ``omit`` allows, new whatever ``out`` (the backend protocol). Built on the device,
        by row blocks, as ``sum_k D^T diag(omega p_k) D (x) e_k e_k^T - E^T diag(omega) E``
        with ``E = [p_i1 d_i, ..., p_iK d_i]`` (``d_i`` the design row):
        ``omega_i (diag(p_i) - p_i p_i^T) (x) d_i d_i^T`` summed over rows.
        """
        xp = self.xp
        K, d = self.n_classes, self.n_features
        fit_intercept = intercept is not None
        size = d + fit_intercept
        # float64 where asked and the device has it (MPS has not: float32 there)
        float_dtype = xp.float32 if np.dtype(dtype) == np.float32 else self._widest_float
        center = np.zeros(d) if center is None else np.asarray(center, dtype=np.float64)
        scale = np.ones(d) if scale is None else np.asarray(scale, dtype=np.float64)
        center_x = xp.asarray(center, dtype=float_dtype, device=self.device)
        scale_x = xp.asarray(scale, dtype=float_dtype, device=self.device)
        if rows is None:
            row_index, weight = None, self.weight
        else:
            row_index = np.asarray(rows, dtype=np.intp)
            weight = self.weight[row_index]
            if row_factor is not None:
                weight = weight * row_factor
        n_rows = weight.shape[0]
        weight_x = xp.asarray(weight, dtype=float_dtype, device=self.device)
        hessian = xp.zeros((K * size, K * size), dtype=float_dtype, device=self.device)
        step = max(1, HESSIAN_BLOCK_NUMBERS // (K * size))
        for start in range(0, n_rows, step):
            stop = min(start + step, n_rows)
            if row_index is None:
                X_block = self.X[start:stop, :]
            else:
                taken = xp.asarray(row_index[start:stop], device=self.device)
                X_block = xp.take(self.X, taken, axis=0)
            design = (xp.astype(X_block, float_dtype) - center_x) / scale_x
            if fit_intercept:
                ones = xp.ones((stop - start, 1), dtype=float_dtype, device=self.device)
                design = xp.concat([design, ones], axis=1)
            proba = xp.astype(softmax(self._logits(coef, intercept, X_block), xp), float_dtype)
            block_weight = weight_x[start:stop]
            # E: (rows, K * size), class by class
            spread = xp.reshape(proba[:, :, None] * design[:, None, :], (stop - start, K * size))
            hessian = hessian - xp.permute_dims(spread, (1, 0)) @ (spread * block_weight[:, None])
            for k in range(K):
                diagonal = xp.permute_dims(design, (1, 0)) @ (
                    design * (block_weight * proba[:, k])[:, None]
                )
                block = slice(k * size, (k + 1) * size)
                hessian[block, block] = hessian[block, block] + diagonal
        # from class by class [coef_k, intercept_k] to all coefficients, then intercepts
        order = np.arange(K * size).reshape(K, size)
        order = np.concatenate([order[:, :d].ravel(), order[:, d:].ravel()])
        if on_device:
            order = xp.asarray(order, device=self.device)
            return xp.take(xp.take(hessian, order, axis=0), order, axis=1)
        hessian = np.asarray(to_numpy(hessian, xp))
        return np.asfortranarray(hessian[np.ix_(order, order)], dtype=dtype)

    def loss_gradient_hessian(
        self,
        coef,
        intercept,
        *,
        center=None,
        scale=None,
        budget=None,
        seed=0,
        dtype=np.float32,
    ):
        """``(loss, grad_coef, grad_intercept, hessian)`` at one point, as NumpyBackend's."""
        return sampled_loss_gradient_hessian(
            self, coef, intercept, center=center, scale=scale, budget=budget, seed=seed, dtype=dtype
        )

    def map_blocks(self, function, **kwargs):
        """``function(X_block, sample_weight_block, **kwargs)`` on row blocks, on the device.

        The feature statistics of ``_conditioning`` (one pass per fit), which
        reduce each block where it is: only a few numbers per feature cross
        to the host. Blocks of at most :data:`STATS_BLOCK_NUMBERS` numbers
        bound the device's temporaries.
        """
        n = self.n_samples
        step = max(1, STATS_BLOCK_NUMBERS // max(1, self.n_features))
        # (stops within the axis: the standard leaves slices past its end unspecified)
        return [
            function(
                self.X[start : min(start + step, n), :],
                self.sample_weight[start : start + step],
                **kwargs,
            )
            for start in range(0, n, step)
        ]
