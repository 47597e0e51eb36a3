"""L-BFGS without bounds, in the compact representation: two matrix-vector products a step.

scipy's L-BFGS-B keeps its ``m`` curvature pairs for box constraints too,
and its bookkeeping passes over them several times an iteration, whether or
not there are bounds: on 100 020 parameters (the sparse benchmark, ``m =
10``) ``setulb`` took 4 ms an iteration at one thread, a third of the fit,
and nearly half at two threads, where the data passes shrink and it does
not. Without bounds the quasi-Newton step has the compact form of Byrd,
Nocedal and Schnabel (1994),

.. math::

    H g = \\gamma g + S p + \\gamma Y q, \\qquad
    q = -R^{-1} a, \\qquad
    p = R^{-\\top} \\bigl((D + \\gamma Y^\\top Y) R^{-1} a - \\gamma b\\bigr),
    \\qquad a = S^\\top g, \\; b = Y^\\top g,

with ``S`` and ``Y`` the last ``m`` steps ``s_i`` and gradient changes
``y_i`` (as columns), ``R`` the upper triangle of ``S^T Y`` (pairs oldest
first), ``D`` its diagonal and ``gamma = s^T y / y^T y`` of the newest
pair. This is the two-loop recursion's ``H g`` exactly, computed otherwise.
The pairs sit in one ``(2 m, n)`` array, so ``(a, b)`` is one product with
it and ``H g`` one with its transpose; everything else is ``m x m``.

The small matrices follow the pairs without further passes: the products
``(a, b)`` at the old and the new gradient differ by ``(S^T y, Y^T y)`` of
the new pair's ``y``, the new column of ``R`` and of ``Y^T Y``. Where ``y``
is tiny next to the gradients that difference would cancel, and the column
is computed directly.

Steps come from L-BFGS-B's own line search (MINPACK's ``dcsrch``, strong
Wolfe conditions, its constants), from the unit step (a step of unit length
without pairs), so the iterates are L-BFGS-B's up to rounding. The objective is
strictly convex wherever it is penalised, so every accepted step has
``s^T y > 0``; a pair without it (no penalty, a flat direction) is not
kept. As in :class:`~._newton_cholesky.NewtonCholesky`, a step that
changes the objective by less than its rounding counts as progress when it
shrinks the gradient, so that the run can go on where the objective can no
longer tell.
"""

import numpy as np
from scipy.linalg import lapack
from scipy.optimize import OptimizeResult

# MINPACK's dcsrch, the line search of L-BFGS-B itself (private, but in
# this form in every scipy release since 0.x; CI runs the oldest supported).
from scipy.optimize._linesearch import scalar_search_wolfe1

from ._newton_cholesky import objective_rounding
from ._scipy import finish, lbfgs_b, short_of

# Curvature pairs kept (scipy's default maxcor).
MEMORY = 10

# The inverse of R, upper triangular, by LAPACK (an m x m matrix once a step).
trtri = lapack.get_lapack_funcs("trtri", dtype=np.float64)

# L-BFGS-B's line search constants (lnsrlb): sufficient decrease, curvature
# (strong Wolfe), the relative width of an acceptable interval, the largest
# step without bounds.
ARMIJO = 1e-3
CURVATURE = 0.9
STEP_XTOL = 0.1
MAX_STEP = 1e10

# Tenfold shrinks of a first trial step whose objective is not finite.
MAX_SHRINKS = 20

# Steps in a row that change the objective by no more than its rounding
# before the run stops as at its noise floor (as NewtonCholesky).
MAX_STEPS_IN_ROUNDING = 5

# Below this ||y|| / (||g|| + ||g_new||), the new pair's column of S^T Y and
# Y^T Y is computed directly, not as a difference of two products.
DIRECT_BELOW = 1e-4


class CompactLBFGS:
    """One run of L-BFGS (see the module docstring), each step a small named method.

    Parameters
    ----------
    tracer : Tracer
        The problem, wrapped by the driver for counting and reporting.
    tol, max_iter : float, int
        The driver's stopping rule: the largest gradient entry at most ``tol``.
    memory : int
        Curvature pairs kept.
    """

    def __init__(self, tracer, tol, max_iter, memory=MEMORY):
        self.tracer = tracer
        self.tol = tol
        self.max_iter = max_iter
        self.memory = memory
        self.rounding = objective_rounding(tracer.problem.loss.data)

    def setup(self, theta0):
        """The start's objective and gradient, and an empty memory."""
        self.theta = np.array(theta0, dtype=np.float64)
        self.f, self.grad = self.tracer.loss_gradient(self.theta)
        # rows 0..m-1: the steps s; rows m..2m-1: the gradient changes y,
        # pair by slot; a slot is reused once the memory is full
        self.pairs = np.zeros((2 * self.memory, self.theta.size))
        self.projections = np.zeros(2 * self.memory)  # pairs @ grad
        self.forget()

    def forget(self):
        """Empty the memory (the slots' contents stay, unused)."""
        self.slots = np.zeros(0, dtype=np.intp)  # in use, oldest pair first
        # by age, oldest first: R = triu(S^T Y) and its inverse, Y^T Y
        self.s_y = np.zeros((0, 0))
        self.r_inv = np.zeros((0, 0))
        self.y_y = np.zeros((0, 0))
        self.gamma = 1.0

    def direction(self):
        """``-H grad`` from the compact form; ``-grad`` with an empty memory."""
        if not self.slots.size:
            return -self.grad
        m, gamma, slots = self.memory, self.gamma, self.slots
        a = self.projections[slots]
        b = self.projections[m + slots]
        r_inv_a = self.r_inv @ a
        inner = np.diag(self.s_y) * r_inv_a + gamma * (self.y_y @ r_inv_a - b)
        coefficients = np.zeros(2 * m)
        coefficients[slots] = self.r_inv.T @ inner
        coefficients[m + slots] = -gamma * r_inv_a
        return -(gamma * self.grad + self.pairs.T @ coefficients)

    def initial_step(self, direction):
        """1, except without curvature pairs: a step of unit length (as L-BFGS-B)."""
        if self.slots.size:
            return 1.0
        return 1.0 / max(np.linalg.norm(direction), np.finfo(float).tiny)

    def line_search(self, direction, slope):
        """A step that meets the strong Wolfe conditions: ``(theta, f, grad, within_rounding)``.

        L-BFGS-B's own line search: MINPACK's ``dcsrch`` with its constants
        (``scalar_search_wolfe1``), from :meth:`initial_step`, which is taken
        without it where it already meets the conditions (most steps). None
        where it finds no such step, unless a trial shrank the gradient while
        changing the objective by less than its rounding (then the last such
        trial: progress the objective can no longer tell).
        """
        step = self.initial_step(direction)
        for _ in range(MAX_SHRINKS):
            # a first trial whose objective overflows (inf, NaN) would leave
            # dcsrch's interpolation nothing to work with: shrink it first
            candidate = self.theta + step * direction
            f_new, grad_new = self.tracer.loss_gradient(candidate)
            if np.isfinite(f_new):
                break
            step *= 0.1
        trials = {1.0: (candidate, f_new, grad_new, step * (grad_new @ direction))}

        def evaluate(multiple):
            """The trial ``multiple * step``: ``(theta, f, grad, slope)``, evaluated once."""
            if multiple not in trials:
                candidate = self.theta + (multiple * step) * direction
                f_new, grad_new = self.tracer.loss_gradient(candidate)
                trials[multiple] = (candidate, f_new, grad_new, step * (grad_new @ direction))
            return trials[multiple]

        scaled_slope = step * slope
        _, f_new, _, slope_new = evaluate(1.0)
        if f_new <= self.f + ARMIJO * scaled_slope and abs(slope_new) <= -CURVATURE * scaled_slope:
            multiple = 1.0
        else:
            multiple, _, _ = scalar_search_wolfe1(
                lambda multiple: evaluate(multiple)[1],
                lambda multiple: evaluate(multiple)[3],
                phi0=self.f,
                derphi0=scaled_slope,
                c1=ARMIJO,
                c2=CURVATURE,
                amax=MAX_STEP / step,
                amin=0.0,
                xtol=STEP_XTOL,
            )
        if multiple is not None:
            candidate, f_new, grad_new, _ = evaluate(multiple)
            if f_new <= self.f:
                within_rounding = abs(f_new - self.f) <= self.rounding * abs(self.f)
                return candidate, f_new, grad_new, within_rounding
        grad_size = np.abs(self.grad).max()
        for candidate, f_new, grad_new, _ in reversed(trials.values()):
            if abs(f_new - self.f) <= self.rounding * abs(self.f):
                if np.abs(grad_new).max() < grad_size:
                    return candidate, f_new, grad_new, True
        return None

    def update_memory(self, theta_new, grad_new):
        """Keep the pair ``(s, y)`` of the step just taken (if ``s^T y > 0``); ``pairs @ grad``."""
        step = theta_new - self.theta
        change = grad_new - self.grad
        projections = self.pairs @ grad_new
        s_y_new = step @ change
        y_y_new = change @ change
        if not (s_y_new > 0 and y_y_new > 0):
            self.projections = projections
            return
        full = self.slots.size == self.memory
        kept = self.slots[1:] if full else self.slots
        slot = self.slots[0] if full else self.slots.size
        rows = np.concatenate([kept, self.memory + kept])
        scale = np.sqrt(self.grad @ self.grad) + np.sqrt(grad_new @ grad_new)
        if np.sqrt(y_y_new) < DIRECT_BELOW * scale:
            column = self.pairs[rows] @ change
        else:
            column = projections[rows] - self.projections[rows]
        count = kept.size
        s_y = np.zeros((count + 1, count + 1))
        y_y = np.zeros((count + 1, count + 1))
        old = slice(1, None) if full else slice(None)
        s_y[:count, :count] = self.s_y[old, old]
        y_y[:count, :count] = self.y_y[old, old]
        s_y[:count, count] = column[:count]
        y_y[:count, count] = y_y[count, :count] = column[count:]
        s_y[count, count] = s_y_new
        y_y[count, count] = y_y_new
        r_inv, info = trtri(s_y, lower=0)
        if info != 0 or not np.all(np.isfinite(r_inv)):
            self.projections = projections
            return
        self.s_y, self.y_y, self.r_inv = s_y, y_y, r_inv
        self.pairs[slot] = step
        self.pairs[self.memory + slot] = change
        self.slots = np.append(kept, slot)
        self.gamma = s_y_new / y_y_new
        projections[slot] = step @ grad_new
        projections[self.memory + slot] = change @ grad_new
        self.projections = projections

    def converged(self):
        """The driver's criterion: the largest (weighted) gradient entry at most ``tol``."""
        stationarity = self.tracer.problem.stationarity(self.theta, self.grad)
        return not np.max(np.abs(stationarity), initial=0.0) > self.tol

    def solve(self, theta0):
        """Run from ``theta0``; a scipy-style result (``x``, ``fun``, ``jac``, ``nit``, ...)."""
        self.setup(theta0)
        message = "gradient tolerance met"
        n_iter = 0
        in_rounding = 0
        while not self.converged():
            if n_iter >= self.max_iter:
                message = "maximum number of iterations reached"
                break
            direction = self.direction()
            slope = self.grad @ direction
            if not slope < 0:
                # rounding in the pairs: start the memory afresh
                self.forget()
                direction = -self.grad
                slope = self.grad @ direction
            accepted = self.line_search(direction, slope)
            if accepted is None:
                message = "line search found no decrease: precision exhausted"
                break
            theta_new, f_new, grad_new, within_rounding = accepted
            self.update_memory(theta_new, grad_new)
            self.theta, self.f, self.grad = theta_new, f_new, grad_new
            n_iter += 1
            in_rounding = in_rounding + 1 if within_rounding else 0
            self.tracer.callback(OptimizeResult(x=self.theta, fun=self.f))
            if in_rounding >= MAX_STEPS_IN_ROUNDING and not self.converged():
                message = "no decrease beyond rounding for 5 steps: precision exhausted"
                break
        return OptimizeResult(x=self.theta, fun=self.f, jac=self.grad, nit=n_iter, message=message)


def lbfgs(tracer, theta0, tol, max_iter, **_):
    """L-BFGS on the closed-form loss and gradient: :class:`CompactLBFGS`, or L-BFGS-B under bounds.

    Bounds (an L1 split, a box on the coefficients) go to scipy's L-BFGS-B
    (``_scipy.lbfgs_b``). When the run stops on its own short of ``tol``
    (the objective no longer decreased), the curvature pairs can be stale
    by then, and one restart from the same point with an empty memory often
    goes further. If that too stops short, without bounds, closely solved
    Newton steps finish as after trust-ncg (``_scipy.newton_cg``):
    Hessian-vector products, no Hessian matrix. On the raw wine data at
    C = 1e-3 (tol = 1e-10), scipy 1.11's L-BFGS-B stopped at a gradient of
    2.2e-8, above the 1.5e-8 that counts as float64's floor.
    """
    bounded = tracer.problem.bounds is not None

    def run(start, iterations):
        if bounded:
            return lbfgs_b(tracer, start, tol, iterations)
        return CompactLBFGS(tracer, tol, iterations).solve(start)

    res = run(theta0, max_iter)
    if res.nit < max_iter and short_of(tracer, res, tol):
        more = run(res.x, max_iter - res.nit)
        more.nit += res.nit
        res = more
    if not bounded and res.nit < max_iter and short_of(tracer, res, tol):
        finish(tracer, res, max_iter)
    return res
