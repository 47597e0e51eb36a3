"""The in-memory backend: dense or sparse X in this process, evaluated block by block."""

import copy

import numpy as np
import scipy.sparse as sp

from .. import _hessian, _loss, _omission
from .._scratch import Scratch
from .._threads import map_in_threads, pass_threads
from . import _compiled
from ._compiled import summed
from ._design import in_design_coordinates
from ._proba_cache import cached_proba, keep_proba, proba_lookup, proba_to_refill
from ._sampled import hessian_sample, sampled_loss_gradient_hessian

# Bytes of dense X evaluated per row block, and the fewest rows in a block
# (see NumpyBackend.row_blocks).
BLOCK_BYTES = 1 << 22
MIN_BLOCK_ROWS = 2048

# Rows per block of the feature statistics, at most (see NumpyBackend.map_blocks).
STATS_BLOCK_ROWS = 1024

# Rows densified and transformed at a time while a Hessian is built: blocks
# of about this many bytes of float64 rows but at most an eighth of the rows,
# and at least HESSIAN_BLOCK_ROWS rows. A block makes up to K (K - 1) / 2
# BLAS calls, so not too few rows; without the eighth, a fit on 2600 x 50
# float32 rows peaked at 2.5 times X instead of 1.0.
HESSIAN_BLOCK_BYTES = 1 << 19
HESSIAN_BLOCK_ROWS = 256

# The threads of a Hessian pass each sum their rows into a buffer of the
# class pairs (see NumpyBackend.class_pairs); the buffers beyond the first
# take at most this many bytes, or the pass runs on fewer threads.
PAIR_THREADS_BYTES = 64 << 20


class NumpyBackend:
    """The data term on X held in memory: a numpy array or a CSR/CSC matrix.

    Implements the backend protocol of ``skmultilogit._backends``.

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

    Examples
    --------
    >>> import numpy as np
    >>> from skmultilogit._backends import NumpyBackend
    >>> X = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    >>> data = NumpyBackend(X, np.array([0, 1, 2]), 3, np.ones(3))
    >>> loss, grad_coef, grad_intercept = data.loss_gradient(np.zeros((3, 2)), np.zeros(3))
    >>> bool(np.isclose(loss, 3 * np.log(3)))
    True
    """

    passes_are_rounds = False
    newton_by_default = True
    # large passes run their row blocks in threads (see _pass_groups)
    row_threads = True

    def __init__(self, X, y, n_classes, sample_weight):
        self.X = X
        # contiguous: the compiled loops take rows of them (a Dask block's
        # labels can be a strided view)
        self.y = np.ascontiguousarray(y, dtype=np.intp)
        self.n_classes = int(n_classes)
        self.sample_weight = np.ascontiguousarray(sample_weight, dtype=np.float64)
        self.n_samples, self.n_features = X.shape
        self.dtype = X.dtype
        self.sparse = sp.issparse(X)
        self.stored_entries = X.nnz if self.sparse else X.shape[0] * X.shape[1]
        self.total_weight = self.sample_weight.sum()
        self.weight = self.sample_weight
        # 0, 1, 2, ... for the rows of the largest block (see _loss.residual_and_loss)
        self._positions = np.arange(self._block_step())
        # sparse X is one row block (see row_blocks), so one transpose serves
        self._X_T = X.T if self.sparse else None
        # dense X's row blocks, views kept: slicing anew cost 10 % of a digits product
        self._dense_blocks = None if self.sparse else [(r, X[r], None) for r in self.row_blocks()]
        self._csr_block_cache = None
        self._proba_cache = None

    def rows(self, index):
        """A backend on the rows ``index`` of this one (a cross-validation fold)."""
        return NumpyBackend(self.X[index], self.y[index], self.n_classes, self.sample_weight[index])

    def with_factor(self, multiplier=1.0, divisor=1.0):
        """This data with per-sample factors ``omega = s * multiplier / divisor``.

        The factor is applied to each weight, not to the sums, so that a
        huge C times a sum of losses cannot overflow where each term does
        not.
        """
        scaled = copy.copy(self)
        scaled.weight = self.sample_weight * multiplier / divisor
        scaled._proba_cache = None
        return scaled

    def row_blocks(self):
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
        step = self._block_step()
        return [slice(start, start + step) for start in range(0, self.n_samples, step)]

    def _block_step(self):
        if self.sparse:
            return max(1, self.n_samples)
        step = min(
            BLOCK_BYTES // max(1, self.n_features * self.X.itemsize),
            # the float64 n_block x K temporaries stay a fraction of that
            (BLOCK_BYTES // 64) // (8 * self.n_classes),
        )
        return min(max(MIN_BLOCK_ROWS, step), max(1, self.n_samples))

    def _pass_groups(self):
        """The row blocks of one pass, in one group per thread (``_threads.pass_threads``).

        Each block is ``(rows, X_block, X_block_T)``; ``X_block_T`` is a
        sparse block's transpose (built once), None for dense X. Dense blocks
        are dealt to the threads in turn. Sparse CSR X is cut into one block
        per thread, at rows that share its stored entries out evenly: row
        slices of a CSR matrix's arrays, no copy of X (``_csr_blocks``).
        CSC X has no such slices and is taken whole, on one thread.
        """
        if self.sparse:
            threads = 1
            if self.X.format == "csr":
                threads = pass_threads(self, self.n_samples // MIN_BLOCK_ROWS)
            if threads == 1:
                return [[(slice(0, self.n_samples), self.X, self._X_T)]]
            return [[block] for block in self._csr_blocks(threads)]
        blocks = self._dense_blocks
        threads = pass_threads(self, len(blocks))
        return [blocks[start::threads] for start in range(threads)]

    def _csr_blocks(self, n_blocks):
        """``n_blocks`` row blocks of CSR X with about equal stored entries, kept between passes."""
        cached = self._csr_block_cache
        if cached is None or len(cached) != n_blocks:
            indptr = self.X.indptr
            targets = np.linspace(0, indptr[-1], n_blocks + 1)[1:-1]
            bounds = [0, *np.searchsorted(indptr, targets).tolist(), self.n_samples]
            cached = []
            for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
                first, last = indptr[start], indptr[stop]
                # the arrays set directly: the constructor would cast int64
                # indices down to int32, a copy of them
                block = sp.csr_matrix((stop - start, self.n_features), dtype=self.X.dtype)
                block.data = self.X.data[first:last]
                block.indices = self.X.indices[first:last]
                block.indptr = indptr[start : stop + 1] - first
                cached.append((slice(start, stop), block, block.T))
            self._csr_block_cache = cached
        return cached

    def loss_gradient(self, coef, intercept):
        """The data term and its gradient (see the backend protocol)."""
        kernel = _compiled.csr_kernel(self)
        if kernel is not None:
            # (it never forms the n x K probabilities: the cache stays as it was)
            return _compiled.csr_loss_gradient(self, kernel, coef, intercept)
        # refilled on the way once a Newton solver keeps them (_proba_cache)
        proba = proba_to_refill(self) if self.dtype == np.float64 else None
        kernel = _compiled.dense_kernel(self)
        if kernel is not None:
            result = _compiled.dense_loss_gradient(self, kernel, coef, intercept, proba)
        else:
            result = self._blocks_loss_gradient(coef, intercept, proba)
        if proba is not None:
            keep_proba(self, coef, intercept, proba)
        return result

    def _blocks_loss_gradient(self, coef, intercept, proba):
        """:meth:`loss_gradient` by numpy's products and ``_loss``'s element-wise work."""
        coef_x = coef.astype(self.dtype, copy=False)

        def on_blocks(blocks):
            grad_coef = np.zeros((self.n_classes, self.n_features))
            grad_intercept = np.zeros(self.n_classes)
            loss = 0.0
            scratch = Scratch()
            for rows, X_block, X_block_T in blocks:
                # the intercept added, and its gradient summed, on the way
                # through the element-wise work
                residual = _loss.class_major_logits(X_block, coef_x, None, scratch)
                loss += _loss.residual_and_loss(
                    residual,
                    self.y[rows],
                    self.weight[rows],
                    self._positions,
                    scratch,
                    proba=None if proba is None else proba[:, rows],
                    intercept=intercept,
                    residual_sums=grad_intercept,
                )
                _loss.add_transposed_products(
                    X_block, residual, grad_coef, None, X_block_T, scratch
                )
            return loss, grad_coef, grad_intercept

        return summed(map_in_threads(on_blocks, self._pass_groups()))

    def _proba(self, coef, intercept):
        """Softmax probabilities, class-major (n_classes, n_samples), in X's dtype.

        float32 X keeps them in float32: the Hessian products they feed run
        in float32 anyway, and n x K floats can be a sizeable part of X.
        """
        coef_x = coef.astype(self.dtype, copy=False)
        proba = np.empty((self.n_classes, self.n_samples), dtype=self.dtype)

        def on_blocks(blocks):
            scratch = Scratch()
            for rows, X_block, _ in blocks:
                proba[:, rows] = _loss.softmax_class_major(
                    _loss.class_major_logits(X_block, coef_x, intercept, scratch)
                )

        map_in_threads(on_blocks, self._pass_groups())
        return proba

    def _cached_proba(self, coef, intercept):
        """The probabilities at ``(coef, intercept)``, kept between calls at one point.

        A sequence of Hessian products at one point (a conjugate-gradient
        inner solve) then costs two matrix products each.
        """
        return cached_proba(self, coef, intercept)

    def hessp(self, coef, intercept, dir_coef, dir_intercept):
        """The data term's Hessian times ``(dir_coef, dir_intercept)``."""
        proba = self._cached_proba(coef, intercept)
        kernel = _compiled.csr_kernel(self)
        if kernel is not None:
            return _compiled.csr_hessp(self, kernel, proba, dir_coef, dir_intercept)
        kernel = _compiled.dense_kernel(self)
        if kernel is not None:
            return _compiled.dense_hessp(self, kernel, proba, dir_coef, dir_intercept)
        dir_x = dir_coef.astype(self.dtype, copy=False)

        def on_blocks(blocks):
            product_coef = np.zeros((self.n_classes, self.n_features))
            product_intercept = np.zeros(self.n_classes)
            scratch = Scratch()
            for rows, X_block, X_block_T in blocks:
                residual = _loss.hessp_residual(
                    _loss.class_major_logits(X_block, dir_x, None, scratch),
                    proba[:, rows],
                    self.weight[rows],
                    scratch,
                    dir_intercept=dir_intercept,
                    residual_sums=product_intercept,
                )
                _loss.add_transposed_products(
                    X_block, residual, product_coef, None, X_block_T, scratch
                )
            return product_coef, product_intercept

        return summed(map_in_threads(on_blocks, self._pass_groups()))

    def hessp_at(self, coef, intercept, *, center=None, scale=None, inert=None):
        """:meth:`hessp` at one point as a function of the direction alone.

        ``product(dir_coef, dir_intercept) -> (product_coef,
        product_intercept)``, each product equal to :meth:`hessp`'s at
        ``(coef, intercept)`` (copied here); with ``center`` and ``scale``
        (and the mask ``inert``), the direction and the product in the
        coordinates of the design rows ``[(x - center) / scale, 1]``
        (``_design``). Where the compiled dense pass runs the products, its
        tables are made once for all of them and the coordinates change in
        them (``_compiled.dense_hessp_at``); otherwise each product is
        :meth:`hessp` between ``_design``'s numpy steps.
        """
        coef = coef.copy()
        intercept = None if intercept is None else intercept.copy()
        kernel = _compiled.dense_kernel(self)
        if kernel is None:

            def product(dir_coef, dir_intercept):
                return self.hessp(coef, intercept, dir_coef, dir_intercept)

            return in_design_coordinates(product, center, scale, inert)
        return _compiled.dense_hessp_at(
            self, kernel, proba_lookup(self, coef, intercept), center, scale, inert
        )

    def curvature(self, coef, intercept):
        """``omega_i (1 - ||p_i||^2)`` for every row, block by block (no n x K array kept)."""
        coef_x = coef.astype(self.dtype, copy=False)
        curvature = np.empty(self.n_samples)

        def on_blocks(blocks):
            scratch = Scratch()
            for rows, X_block, _ in blocks:
                # float64: 1 - ||p||^2 of a nearly certain row cancels to 0
                # in float32, and a row of curvature 0 is never sampled
                logits = _loss.class_major_logits(X_block, coef_x, intercept, scratch)
                proba = _loss.softmax_class_major(logits.astype(np.float64, copy=False))
                curvature[rows] = _hessian.curvature(proba, self.weight[rows])

        map_in_threads(on_blocks, self._pass_groups())
        return curvature

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

        Parameters
        ----------
        coef, intercept : ndarray
            The point (intercept None: no intercept).
        center, scale : ndarray of shape (n_features,), optional
            The feature transform (defaults 0 and 1).
        rows : ndarray of int, optional
            Evaluate on these rows only (a sub-sampled Hessian); default all.
        row_factor : ndarray of shape (len(rows),), optional
            Multiplies the per-sample factors of ``rows`` (inverse inclusion
            probabilities: an unbiased estimate of the full sum). Default 1.
        dtype : {np.float64, np.float32}
            Of the accumulation and the result (float32: a preconditioner's).
        on_device : bool
            Ignored: this backend's Hessian is numpy already.
        omit : float, default=0
            May leave out terms of spectral norms summing to at most this (a
            preconditioner's: ``_omission.add_class_pairs_omitting``).
        out : ndarray, optional
            An array the result may overwrite (``_hessian.hessian_storage``):
            a preconditioner's last factor, whose pages are in memory.

        Returns
        -------
        hessian : ndarray of shape (n_params, n_params), Fortran order
            The upper triangle holds the Hessian (see ``_loss``); the strict
            lower triangle is not meaningful.
        """
        K, d = self.n_classes, self.n_features
        fit_intercept = intercept is not None
        if not coef.any():
            # Every row has p = softmax(b): the Kronecker form.
            gram = self.gram(center=center, scale=scale, rows=rows, row_factor=row_factor)
            return _hessian.kronecker_hessian(gram, intercept, K, dtype)
        pairs = self.class_pairs(
            coef,
            intercept,
            center=center,
            scale=scale,
            rows=rows,
            row_factor=row_factor,
            dtype=dtype,
            omit=omit,
            storage=out,
        )
        return _hessian.class_pair_hessian(pairs, K, d, fit_intercept, out=out)

    def class_pairs(
        self,
        coef,
        intercept,
        *,
        center=None,
        scale=None,
        rows=None,
        row_factor=None,
        dtype=np.float64,
        omit=0.0,
        storage=None,
    ):
        """The sums ``S_kl``, ``k < l``, that make the Hessian (``_hessian.ClassPairSums``).

        Arguments as in :meth:`hessian`, which is
        ``_hessian.class_pair_hessian`` of them away from the zero point;
        ``storage`` (its ``out``) may hold one thread's stacked sums.
        """
        fit_intercept = intercept is not None
        size = self.n_features + fit_intercept
        omits = _omission.omits_terms(self.n_classes, size, dtype, self.sparse, omit)
        blocks, weight, transformed = self._hessian_blocks(
            center, scale, rows, row_factor, dtype=dtype, intercept_column=fit_intercept
        )
        share = omit / max(1, len(weight))  # a block may leave out its rows' shares
        if omits:  # a block's terms are chosen among its rows: the more, the better
            step = _omission.omitting_block_rows(self.n_classes, size, dtype, self.sparse)
            blocks = [slice(start, start + step) for start in range(0, len(weight), step)]
        coef_x = coef.astype(self.dtype)

        def on_blocks(group, storage=None):
            # one accumulator per thread, summed after: a thread's share of
            # the rows costs as much as the Hessian's size in memory again
            sums = _hessian.ClassPairSums(self.n_classes, size, dtype, omits=omits, storage=storage)
            scratch = Scratch()
            for block in group:
                X_block, design = transformed(block, scratch)
                proba = _loss.softmax_in_place(_loss.logits(X_block, coef_x, intercept, scratch))
                sums.add(design, proba, weight[block], scratch, omit=share * len(design))
            return sums.pairs()

        if _hessian.stacks_classes(self.n_classes, size) and not omits:
            # one K (d + 1)-square accumulator, whose large updates BLAS's
            # threads share: row-block threads would each need their own,
            # and on 2 cores were no faster (see _hessian.ClassPairSums)
            threads = 1
        else:
            buffer_bytes = np.dtype(dtype).itemsize * size**2 * self.n_classes**2 // 2
            threads = min(pass_threads(self, len(blocks)), 1 + PAIR_THREADS_BYTES // buffer_bytes)
        groups = [blocks[start::threads] for start in range(threads)]
        # the storage to the calling thread's accumulator alone
        parts = map_in_threads(
            lambda group: on_blocks(group, storage if group is groups[0] else None), groups
        )
        for part in parts[1:]:
            parts[0] += part
        return parts[0]

    def gram(self, *, center=None, scale=None, rows=None, row_factor=None):
        """``sum_i omega_i [x^_i, 1] [x^_i, 1]^T``, float64, (d + 1)-square (``_hessian.add_gram``).

        ``x^_i = (x_i - center) / scale``; ``rows`` and ``row_factor`` as in
        :meth:`hessian`, which at all coefficients zero is this matrix in
        Kronecker form.
        """
        scratch = Scratch()
        # (C-ordered design rows: the Fortran ones the class pairs need cost a
        # write across X's rows, a third of the digits' Gram pass)
        blocks, weight, transformed = self._hessian_blocks(
            center, scale, rows, row_factor, order="C"
        )
        gram = np.zeros((self.n_features + 1, self.n_features + 1))
        for block in blocks:
            _hessian.add_gram(gram, transformed(block, scratch)[1], weight[block], scratch)
        return gram

    def _hessian_blocks(
        self,
        center,
        scale,
        rows,
        row_factor,
        *,
        dtype=np.float64,
        intercept_column=False,
        order="F",
    ):
        """Row blocks, the per-sample factors and the transform of a Hessian pass.

        ``transformed(block, scratch)`` gives the block's rows of X (dense)
        and its design rows ``(x - center) / scale``, with a column of ones
        when ``intercept_column``, in ``order`` and ``dtype`` (``scratch``'s,
        valid until the next block): the one copy a block's Hessian needs.
        """
        d = self.n_features
        center = np.zeros(d) if center is None else np.asarray(center, dtype=np.float64)
        scale = np.ones(d) if scale is None else np.asarray(scale, dtype=np.float64)
        if rows is None:
            n_rows, weight = self.n_samples, self.weight
        else:
            rows = np.asarray(rows, dtype=np.intp)
            n_rows, weight = rows.size, self.weight[rows]
            if row_factor is not None:
                weight = weight * row_factor
        step = max(HESSIAN_BLOCK_ROWS, min(HESSIAN_BLOCK_BYTES // (8 * (d + 1)), -(-n_rows // 8)))
        blocks = [slice(start, start + step) for start in range(0, n_rows, step)]

        def transformed(block, scratch):
            if rows is None:
                X_block = self.X[block]
            elif sp.issparse(self.X):
                X_block = self.X[rows[block]]
            else:
                # the sampled rows gathered into a reused block (fancy
                # indexing would allocate one per block)
                taken = rows[block]
                X_block = scratch.empty("rows", (taken.size, d), self.dtype)
                np.take(self.X, taken, axis=0, out=X_block)
            if sp.issparse(X_block):
                X_block = X_block.toarray()
            design = scratch.empty("design", (X_block.shape[0], d + intercept_column), dtype, order)
            np.subtract(X_block, center, out=design[:, :d], casting="unsafe")
            design[:, :d] /= scale
            if intercept_column:
                design[:, d] = 1.0
            return X_block, design

        return blocks, weight, transformed

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
        """The data term, its gradient and its Hessian at one point, in one call.

        ``(loss, grad_coef, grad_intercept, hessian)``; the Hessian as in
        :meth:`hessian`, on a row sample drawn by curvature
        (``_hessian.hessian_rows``, seeded by ``seed``) of about ``budget`` rows
        when that is fewer than the rows (and the coefficients are not all
        zero: there the Kronecker form is exact and cheap).
        """
        return sampled_loss_gradient_hessian(
            self, coef, intercept, center=center, scale=scale, budget=budget, seed=seed, dtype=dtype
        )

    def hessian_sample(self, coef, intercept, budget, seed):
        """``(rows, row_factor)`` of :meth:`loss_gradient_hessian`'s sample, or Nones: all rows."""
        return hessian_sample(self, coef, intercept, budget, seed)

    def map_blocks(self, function, **kwargs):
        """``function(X_block, sample_weight_block, **kwargs)`` for each row block, in a list.

        Dense X is read in blocks of at most ``STATS_BLOCK_ROWS`` rows and an
        eighth of X (a 1024-row block was 3/4 of the digits and set the
        peak memory of a whole fit), so that only one float64 block exists
        at a time; sparse X is one block. (Each block costs about 45 us of
        numpy calls: sixteenth-size blocks took 0.97 ms of the digits'
        statistics, eighths 0.77, and lbfgs's peak stayed 0.37 of X.)
        """
        if self.sparse:
            blocks = [slice(0, self.n_samples)]
        else:
            step = max(32, min(STATS_BLOCK_ROWS, self.n_samples // 8))
            blocks = [slice(start, start + step) for start in range(0, self.n_samples, step)]
        return [function(self.X[rows], self.sample_weight[rows], **kwargs) for rows in blocks]
