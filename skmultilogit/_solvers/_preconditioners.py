"""newton-cholesky's preconditioners: the Cholesky factor of the Hessian at some iterate.

:class:`Preconditioner` factors the data term's Hessian (on all rows, or a
row sample drawn by curvature on large data: :func:`hessian_budget`) plus
the penalty's diagonal; :class:`KroneckerPreconditioner` the exact Hessian at
zero coefficients in its Kronecker form. Both keep what the next fit of a
path on the same data can reuse (``for_problem``). The solvers that use them:
``_newton_cholesky`` (as CG's preconditioner) and ``_newton_rounds`` (its
steps).
"""

import numpy as np

from .._cholesky import HOST, KroneckerFactor, factoriser_for
from .._hessian import class_covariance, fits_hessian, hessian_rows, stacks_classes
from ._threads import product_size

# A refresh of the preconditioner may cost about as many multiply-adds as
# this many gradient evaluations; larger data sub-samples rows for it (the
# Hessian-vector products in the CG solve stay exact)...
HESSIAN_COST_IN_GRADIENTS = 20

# ...but never on fewer rows than this many per parameter.
MIN_HESSIAN_ROWS_PER_PARAM = 3


def hessian_budget(loss):
    """Rows the preconditioner may be built on.

    Chosen so that one build costs about ``HESSIAN_COST_IN_GRADIENTS``
    gradient evaluations (the Hessian takes ``n_params^2 / 2 + K (d + 1)^2``
    multiply-adds per row, a gradient ``2 K`` per stored entry of X), and
    never fewer than ``MIN_HESSIAN_ROWS_PER_PARAM`` per parameter.
    """
    gradient_work = 2 * product_size(loss.data)
    per_row = loss.n_params**2 / 2 + loss.n_classes * (loss.n_features + 1) ** 2
    return max(
        HESSIAN_COST_IN_GRADIENTS * gradient_work / per_row,
        MIN_HESSIAN_ROWS_PER_PARAM * loss.n_params,
    )


# newton-cholesky's factors (Preconditioner, omit_fraction) leave out of the
# data Hessian terms whose spectral norms sum to at most this fraction of the
# smallest curvature the penalty adds to a coefficient: the preconditioned
# spectrum of the coefficients' directions then lies in [1, 1 + fraction]
# (_omission.add_class_pairs_omitting). Measured, defaults, one thread,
# digits' 1347 training rows (min of 12 fits, interleaved, against none left
# out): 0.1 took raw 46.9 -> 42.5 ms, standardised 32.6 -> 32.3, binarised
# 27.4 -> 28.1, iterations unchanged; a Hessian build on the raw digits kept
# 25 % and 9 % of the terms at its two iterates. With the compiled kernel's
# cheaper products, 1.0 against 0.1 (medians of 8 interleaved fits after a
# larger one, one thread): raw 31.7 -> 30.7 ms, standardised 27.2 -> 25.9,
# binarised 22.7 -> 21.8, at C = 100 46.6 -> 46.2, 62.7 -> 61.4, 56.1 ->
# 54.6; the Hessian products within 7 and the iterations within 1 on the
# digits, iris, wine and breast cancer at C = 1, 100, 1e4, the objective
# within 1e-13 of a tight newton-cg fit either way; the raw digits' builds
# keep 19 % and 5 % of the terms. Min of 5 fits at C = 1 and 100: 20 000 x
# 30, K = 8, 3 and 4 % faster; 8000 x 50, K = 5, 2 % slower and 6 % faster;
# 3000 x 100, K = 10, the same and 4 % faster.
OMIT_FRACTION = 1.0


def omitted_curvature(problem, fraction):
    """What a factor's data Hessian may leave out: ``fraction`` of the penalty's least curvature.

    The smallest entry of the penalty's diagonal over the coefficients (the
    intercepts have none); 0 without an L2 penalty, where nothing bounds
    what leaving terms out would do to the weakest directions.
    """
    loss = problem.loss
    penalty = problem.penalty_diagonal()[: loss.n_classes * loss.n_features]
    if not fraction > 0 or penalty.size == 0:
        return 0.0
    return fraction * float(penalty.min())


# Ridges tried, each ten times the last, before a preconditioner is given up.
RIDGE_TRIES = 12


def next_ridge(shift, size):
    """The ridge to try after ``shift`` failed, for a diagonal of largest entry ``size``."""
    return max(10 * shift, 1e-10 * size or 1e-10)


def with_ridge(factorise, size, shift=0.0, tries=RIDGE_TRIES):
    """``factorise(shift)``, else ``factorise(ridge)`` for growing ridges: the first not None.

    ``size`` is the largest entry of the matrix's diagonal (see
    :func:`next_ridge`); None after ``tries`` failures. Float32
    rounding can leave an unpenalised, nearly separable problem's Hessian
    not numerically positive definite: a small ridge makes a preconditioner
    of it.
    """
    for _ in range(tries):
        factor = factorise(shift)
        if factor is not None:
            return factor
        shift = next_ridge(shift, size)
    return None


def added_diagonal(problem):
    """What a preconditioner adds to the data Hessian's diagonal: the penalty's curvature.

    ``problem.penalty_diagonal()``, with 1 for inert coefficients where there
    is no penalty.
    """
    loss = problem.loss
    n_coef = loss.n_classes * loss.n_features
    penalty = problem.penalty_diagonal()
    if problem.inert is not None and not loss.penalty.l2_strength > 0:
        # Inert coefficients have no curvature and, exactly, no gradient
        # without a penalty (ConditionedProblem): any positive pivot keeps
        # their step at zero and the factor definite.
        penalty[:n_coef][np.tile(problem.inert, loss.n_classes)] = 1.0
    return penalty


class Preconditioner:
    """Cholesky factor of the (shifted) Hessian in conditioned coordinates.

    Keeps the data term of the Hessian (``data_hessian``) apart from the
    penalty's diagonal: with the normalised objective the data term does not
    depend on C, so along a path of C values the next fit can start from
    :meth:`for_problem`, one factorisation with the new penalty, instead of
    forming the Hessian again. ``damping`` (absolute) is added to the
    diagonal too: NewtonInRounds's Levenberg-Marquardt steps.
    ``omit_fraction`` lets the data Hessian leave out small terms
    (:func:`omitted_curvature`; newton-cholesky's factors, which only
    precondition exact Hessian products). ``exact``: whether the data
    Hessian is the one at ``theta`` on every row, whole (not a row sample's,
    nor one that may leave terms out, nor handed in); ``sampled``: whether
    it is a row sample's.

    A data Hessian built here and not kept is factored in its own memory,
    and ``storage`` (the last factor's, :meth:`release`) is memory it may
    be built in: one matrix less at a build's peak, no copy, and where the
    allocator hands out fresh pages (glibc, once it has given memory back),
    fewer of them to fault in one by one (the raw 8x8 digits at the
    defaults, one thread, fits in a row: 2310 page faults a fit before, 946
    after, 36.9 against 34.0 ms; where the allocator reused its memory, as
    after larger fits, no faults either way and 32.4 against 32.0 ms).
    ``storage`` is only handed to builds that stack the classes
    (:meth:`builds_in`), whose stacked sums it holds before the Hessian: a
    build holds no more memory at once with it than without. The others
    (K < 4, wide rows) sum into a buffer of pairs per thread, beside which
    it would be one matrix more.
    """

    def __init__(
        self,
        problem,
        theta,
        budget,
        rng,
        null_weight,
        data_hessian=None,
        keep=False,
        dtype=np.float32,
        damping=0.0,
        omit_fraction=0.0,
        storage=None,
    ):
        self.exact = data_hessian is None
        self.sampled = False
        build = None
        if data_hessian is None:
            omit = omitted_curvature(problem, omit_fraction)
            build, self.sampled = self._hessian_builder(problem, theta, budget, rng, dtype, omit)
            data_hessian = build(storage)
            del storage
            self.exact = not self.sampled and not omit > 0
        # kept only when asked: a second n_params-square matrix beside the factor
        self.data_hessian = data_hessian if keep else None
        self.mean = problem.mean
        self.scale = problem.scale
        self.dtype = np.dtype(dtype)
        # LAPACK for a numpy Hessian; a device's for one built there (_cholesky)
        self.linalg = factoriser_for(data_hessian)
        self.factor = self._factorise(
            problem,
            data_hessian,
            null_weight,
            self.dtype,
            damping,
            self.linalg,
            # a device's factoriser forms A in new memory anyway
            rebuild=build if not keep and self.linalg is HOST else None,
        )

    @staticmethod
    def _hessian_builder(problem, theta, budget, rng, dtype, omit):
        """What builds the data term's Hessian at ``theta``, on a row sample for large data.

        It may leave out terms whose spectral norms sum to ``omit``.

        Returns ``(build, sampled)``: ``build(out)`` builds it (the same
        matrix each time: the rows are drawn here), in ``out`` where that
        fits (the backend protocol).
        """
        loss = problem.loss
        rows = row_factor = None
        coef = loss.unpack(problem.to_original(theta))[0]
        # With zero coefficients the Kronecker form is exact and cheap; on a
        # cluster every row is used (sampling would move n numbers).
        if coef.any() and budget < loss.data.n_samples:
            rows, row_factor = hessian_rows(problem.curvature(theta), budget, rng)

        def build(out=None):
            # float32 (see _factorise) like its accumulation: the kept copy costs 4
            # bytes an entry; on the device of an array-API fit, to be factored there
            return problem.data_hessian(
                theta,
                rows=rows,
                row_factor=row_factor,
                dtype=dtype,
                on_device=True,
                omit=omit,
                out=out,
            )

        return build, rows is not None

    def release(self, problem, dtype):
        """This preconditioner's factor, for the next one's Hessian (``problem``'s, in ``dtype``).

        The preconditioner is spent: it solves no more. None, the factor
        dropped too, where that build cannot use it (:meth:`builds_in`):
        held through it unused, it would be one matrix more at its peak.
        """
        factor, self.factor = self.factor, None
        return factor if self.builds_in(problem, dtype, factor) else None

    @staticmethod
    def builds_in(problem, dtype, memory):
        """Whether a build of ``problem``'s data Hessian in ``dtype`` uses ``memory`` whole.

        Memory the Hessian fits in (``_hessian.fits_hessian``), for a build
        that stacks the classes (``_hessian.stacks_classes``; the stack has
        the Hessian's shape): see the class docstring.
        """
        loss = problem.loss
        return fits_hessian(memory, loss.n_params, dtype) and stacks_classes(
            loss.n_classes, loss.n_features + loss.fit_intercept
        )

    @staticmethod
    def _factorise(problem, data_hessian, null_weight, dtype, damping, linalg, rebuild=None):
        """The factor (``_cholesky``); with ``rebuild``, in ``data_hessian``'s memory.

        ``rebuild(out)`` forms the data Hessian again, in ``out``, where the
        first try (no ridge) leaves it half factored.
        """
        n_coef = problem.loss.n_classes * problem.loss.n_features
        added = added_diagonal(problem) + damping
        diagonal = linalg.diagonal(data_hessian) + added
        diagonal[n_coef:] += null_weight
        size = float(np.max(np.abs(diagonal)))
        shift, tries = 0.0, RIDGE_TRIES
        if rebuild is not None:
            factor = linalg.factorise(
                data_hessian, added, n_coef, null_weight, dtype, overwrite=True
            )
            if factor is not None:
                return factor
            # not numerically positive definite without a ridge (rare: see
            # with_ridge); the ridges' tries need the Hessian whole: formed
            # again in the same memory (a copy for each try comes on top)
            data_hessian = rebuild(data_hessian)
            shift, tries = next_ridge(shift, size), tries - 1
        # Factorised in float32 (in the Hessian's memory, or a copy beside a
        # kept one): half the time of float64 (spotrf and strsv), with the
        # same Newton iterations on the digits (raw, binarised at C=1e4) and
        # the wine data: CG with exact Hessian products needs only an
        # approximate preconditioner.
        # (float64 where the factor makes the steps themselves:
        # NewtonInRounds.polish.) Shifting every intercept by one constant
        # changes nothing, so H is singular along u = (0, 1/sqrt(K)); H + u u^T
        # is not, and the Newton step for a gradient orthogonal to u is the same.
        return with_ridge(
            lambda shift: linalg.factorise(data_hessian, added + shift, n_coef, null_weight, dtype),
            size,
            shift,
            tries,
        )

    def for_problem(self, problem, null_weight):
        """This data Hessian seen in ``problem``'s coordinates and with its penalty.

        The feature scales may differ (they depend on the penalty): with
        ``W = V / sigma = V' / sigma'`` the Hessian in ``V'`` is
        ``D H D`` with ``D = sigma / sigma'`` on the coefficients (1 on the
        intercepts). None if the Hessian was not kept, or the centre or the
        shape differs. Consumes this preconditioner: its factor is dropped
        and its Hessian rescaled in place and handed over, so that a path
        holds one Hessian and one factor at a time.
        """
        loss = problem.loss
        if self.data_hessian is None:
            return None
        if self.data_hessian.shape[0] != loss.n_params or not np.array_equal(
            self.mean, problem.mean
        ):
            return None
        ratio = np.ones(loss.n_params)
        ratio[: loss.n_classes * loss.n_features] = np.tile(
            self.scale / problem.scale, loss.n_classes
        )
        data_hessian, self.data_hessian, self.factor = self.data_hessian, None, None
        data_hessian = self.linalg.rescale(data_hessian, ratio)
        return Preconditioner(
            problem, None, None, None, null_weight, data_hessian, keep=True, dtype=self.dtype
        )

    def solve(self, residual):
        """``H^-1 residual`` (float64) from the factor (``_cholesky``)."""
        if self.factor is None:
            return residual.copy()
        return self.linalg.solve(self.factor, residual)


class KroneckerPreconditioner:
    """The preconditioner at zero coefficients, factored in its Kronecker form.

    Every row then has the probabilities ``p = softmax(b)``, and the data
    Hessian in conditioned coordinates is ``(diag(p) - p p^T) (x) G`` with
    ``G`` the Gram matrix of the design rows (``ConditionedProblem.data_gram``);
    the penalty's diagonal is the same for every class. ``_cholesky.KroneckerFactor``
    solves with it by K blocks of size d + 1: the start of a fit neither
    forms nor factors the K (d + 1)-square matrix that :class:`Preconditioner`
    would (on the 8x8 digits, K = 10, that was 4-5 ms of a 35-55 ms fit;
    on 22 500 x 40, K = 50, a 2050-square factorisation of 40 ms at one
    thread). Same interface as :class:`Preconditioner`; float64.

    Use :meth:`at`, which says None where the form does not apply.
    """

    def __init__(self, problem, gram, class_factor, added, null_weight):
        loss = problem.loss
        self.n_classes, self.n_features = loss.n_classes, loss.n_features
        self.fit_intercept = loss.fit_intercept
        self.gram = gram
        self.class_factor = class_factor
        self.mean = problem.mean
        self.scale = problem.scale
        self.factor = self._factorise(added, null_weight)

    @classmethod
    def at(cls, problem, theta, null_weight):
        """The preconditioner at ``theta`` if every coefficient there is zero, else None.

        None too where the backend has no host Gram pass or the added
        diagonal differs between classes (the blocks would not decouple).
        """
        loss = problem.loss
        coef, intercept = loss.unpack(problem.to_original(theta))
        if coef.any() or loss.data.gram is None:
            return None
        added = _added_class_row(problem)
        if added is None:
            return None
        class_factor = class_covariance(intercept, loss.n_classes)
        return cls(problem, problem.data_gram(), class_factor, added, null_weight)

    def _factorise(self, added, null_weight):
        """The blocks' factor with ``added`` (one class's row of the added diagonal)."""
        # the largest entry of the dense matrix's diagonal, for the ridge's size
        diagonal = np.outer(np.diag(self.class_factor), np.diag(self.gram)) + added
        if self.fit_intercept:
            diagonal[:, -1] += null_weight

        def factorise(shift):
            try:
                return KroneckerFactor(self.class_factor, self.gram, added + shift, null_weight)
            except np.linalg.LinAlgError:
                return None

        return with_ridge(factorise, float(np.max(np.abs(diagonal))))

    def for_problem(self, problem, null_weight):
        """This preconditioner in ``problem``'s coordinates (see ``Preconditioner.for_problem``).

        ``G`` in the new feature scales is ``D G D``, ``D = sigma / sigma'``
        on the features (1 on the intercept); None where the centre or the
        shape differs.
        """
        loss = problem.loss
        if (
            self.gram is None
            or (loss.n_classes, loss.n_features, loss.fit_intercept)
            != (self.n_classes, self.n_features, self.fit_intercept)
            or not np.array_equal(self.mean, problem.mean)
        ):
            return None
        added = _added_class_row(problem)
        if added is None:
            return None
        ratio = np.ones(self.gram.shape[0])
        ratio[: self.n_features] = self.scale / problem.scale
        # consumed, as Preconditioner.for_problem: a path holds one at a time
        gram, self.gram, self.factor = self.gram, None, None
        gram *= ratio[:, None] * ratio
        return KroneckerPreconditioner(problem, gram, self.class_factor, added, null_weight)

    def solve(self, residual):
        """``M^-1 residual`` (float64)."""
        if self.factor is None:
            return residual.copy()
        rows = _class_rows(residual, self.n_classes, self.n_features, self.fit_intercept)
        return _flat(self.factor.solve(rows), self.n_features, self.fit_intercept)


def _added_class_row(problem):
    """One class's row of :func:`added_diagonal`, or None where the classes' rows differ."""
    loss = problem.loss
    rows = _class_rows(added_diagonal(problem), loss.n_classes, loss.n_features, loss.fit_intercept)
    return rows[0] if np.all(rows == rows[0]) else None


def _class_rows(flat, n_classes, n_features, fit_intercept):
    """Flat parameters ``[coef (K d), intercept (K)]`` as rows ``[coef_k, intercept_k]``.

    (K, d + 1), or (K, d) without an intercept.
    """
    coef = flat[: n_classes * n_features].reshape(n_classes, n_features)
    if not fit_intercept:
        return coef
    return np.concatenate([coef, flat[n_classes * n_features :, None]], axis=1)


def _flat(rows, n_features, fit_intercept):
    """Inverse of :func:`_class_rows`."""
    if not fit_intercept:
        return rows.ravel()
    return np.concatenate([rows[:, :n_features].ravel(), rows[:, n_features]])
