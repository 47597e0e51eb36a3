"""newton-cholesky where every pass over the data is a round of communication (a cluster).

The same Newton method as ``_newton_cholesky``, but with no conjugate-gradient
solve: there each Hessian-vector product would cost a round. See
:class:`NewtonInRounds`.
"""

import numpy as np
from scipy.optimize import OptimizeResult

from ._newton_cholesky import POLISH_BELOW, POLISH_GAIN, Preconditioner, hessian_budget
from ._threads import product_size

# A step with the current Hessian factor that shrinks the largest gradient
# entry less than this many times asks for a fresh Hessian at the next
# evaluation; backtracking halves a step at most MAX_HALVINGS times.
REBUILD_GAIN = 10.0
MAX_HALVINGS = 30
# Its polish (small problems): at most this many steps, a round each (one
# with the last sampled factor, two with the full Hessian: from a gradient of
# 1e-6 or 1e-8 they reached 1e-16 to 1e-17, and a fourth gained nothing), with
# one Hessian on all the rows, in float64 when its 24 bytes an entry (the
# packed upper triangle arriving, the matrix, its factor's copy and the
# float32 factor still held) fit in 64 MiB (about 1650 parameters), otherwise
# in float32.
ROUNDS_POLISH_STEPS = 3
ROUNDS_POLISH_BYTES_PER_ENTRY = 24
ROUNDS_POLISH_FLOAT64_MAX_BYTES = 64 * 2**20
# Its Hessians are drawn from at least this many rows per parameter, per
# share of the rows a feature fills (density): sampled Hessians make its steps.
ROUNDS_HESSIAN_ROWS_PER_PARAM = 20


class NewtonInRounds:
    """newton-cholesky where every pass over the data is a round of communication (a cluster).

    There a conjugate-gradient solve would cost a round per Hessian product.
    Instead each evaluation returns the objective, the gradient and, when
    asked, the Hessian (on a row sample drawn on the workers, as in memory)
    in one round, and the Newton step is solved with its Cholesky factor on
    the client. The factor is reused while a step with it still shrinks the
    largest gradient entry ``REBUILD_GAIN``-fold (close to the optimum the
    Hessian changes little, and the steps converge fast with an older one);
    otherwise the next evaluation brings a fresh one. A backtracking line
    search (Armijo, or a gradient that shrinks within the objective's
    rounding) makes each step a descent. A unit step costs one round: from
    zero coefficients ten or so rounds reach a gradient of 1e-8. Small
    problems are then polished (:meth:`polish`).
    """

    def __init__(self, tracer, tol, max_iter):
        self.tracer = tracer
        self.problem = tracer.problem
        loss = self.problem.loss
        self.tol = tol
        self.max_iter = max_iter
        # The Hessian makes the steps here, not only their preconditioner: on
        # 6 000 x 40 sparse rows (10 % filled, 123 parameters) a sample of 3
        # rows per parameter took 62 steps, 20 took 28, all rows 13. A
        # feature's entries are only in a share (density) of the rows.
        data = loss.data
        density = data.stored_entries / max(1, data.n_samples * data.n_features)
        self.budget = max(
            hessian_budget(loss), ROUNDS_HESSIAN_ROWS_PER_PARAM * loss.n_params / density
        )
        self.null_weight = 1.0 / loss.n_classes if loss.fit_intercept else 0.0
        self.rounding = 16 * float(np.finfo(loss.data.dtype).eps)
        self.builds = 0

    def evaluate(self, theta, with_hessian, *, all_rows=False, dtype=np.float32):
        """``(f, grad, factor or None)`` at ``theta``: one round.

        The Hessian on a sample of about ``self.budget`` rows, or on
        ``all_rows``; it and its factor in ``dtype``.
        """
        if not with_hessian:
            return (*self.tracer.loss_gradient(theta), None)
        f, grad, hessian = self.tracer.loss_gradient_hessian(
            theta, budget=np.inf if all_rows else self.budget, seed=self.builds, dtype=dtype
        )
        self.builds += 1
        factor = Preconditioner(
            self.problem, theta, None, None, self.null_weight, hessian, dtype=dtype
        )
        return f, grad, factor

    def solve(self, theta0):
        """Run from ``theta0``; a scipy-style result (``x``, ``nit``, ``message``)."""
        theta = np.array(theta0, dtype=np.float64)
        f, grad, factor = self.evaluate(theta, True)
        message = "gradient tolerance met"
        n_iter = in_rounding = 0
        fresh = False
        while np.max(np.abs(grad), initial=0.0) > self.tol:
            if n_iter >= self.max_iter:
                message = "maximum number of iterations reached"
                break
            step = -factor.solve(grad)
            slope = grad @ step
            if not slope < 0:
                step, slope = -grad, -(grad @ grad)
            grad_size = np.abs(grad).sum()
            for _ in range(MAX_HALVINGS):
                candidate = theta + step
                f_new, grad_new, new_factor = self.evaluate(candidate, fresh)
                within_rounding = abs(f_new - f) <= self.rounding * abs(f)
                if f_new <= f + 1e-4 * slope or (
                    within_rounding and np.abs(grad_new).sum() < grad_size
                ):
                    break
                step *= 0.5
                slope *= 0.5
                factor = new_factor or factor
                fresh = False  # one fresh Hessian per step is enough
            else:
                message = "line search found no decrease: precision exhausted"
                break
            gain = np.max(np.abs(grad), initial=0.0) / max(
                np.max(np.abs(grad_new), initial=0.0), np.finfo(np.float64).tiny
            )
            theta, f, grad = candidate, f_new, grad_new
            factor = new_factor or factor
            n_iter += 1
            in_rounding = in_rounding + 1 if within_rounding else 0
            self.tracer.callback(OptimizeResult(x=theta, fun=f))
            fresh = new_factor is None and gain < REBUILD_GAIN
            if in_rounding >= 5 and np.max(np.abs(grad)) > self.tol:
                message = "no decrease beyond rounding for 5 steps: precision exhausted"
                break
        if np.max(np.abs(grad), initial=0.0) <= self.tol:
            theta, f, grad, steps = self.polish(theta, f, grad, factor, self.max_iter - n_iter)
            n_iter += steps
        # the final point's evaluation, for the driver (a rejected trial was the last)
        self.tracer.last = (theta.copy(), f, grad)
        return OptimizeResult(x=theta, nit=n_iter, message=message)

    def polish(self, theta, f, grad, factor, max_steps):
        """Newton steps past ``tol`` on small problems, as NewtonCholesky.polish: a round each.

        The first step is solved with the solver's last (sampled, float32)
        factor; its evaluation brings the Hessian on all the rows, in float64
        where that fits ``ROUNDS_POLISH_FLOAT64_MAX_BYTES``, and the later
        steps are solved with that one (this close to the optimum the
        Hessian hardly changes). A step is kept if it shrinks the largest
        gradient entry without raising the objective beyond its rounding;
        one made with the full Hessian that gains less than
        ``POLISH_GAIN``-fold finds the gradient at its floor, and the polish
        ends. Sampled float32 Hessians cannot make that judgement: on a
        correlated 40 000 x 12 problem (K=5) their steps gained 10-30-fold,
        and one polish in six ended at a gradient of 4e-10, 1e-6 from the
        optimum in the coefficients; a float32 Hessian on all the rows
        stopped at 1e-12 (4e-9 in the coefficients); the float64 one reaches
        2e-16 (1e-13), in 2-3 rounds (no more than ``max_steps``, what
        ``max_iter`` leaves). It costs one Hessian's bytes per
        worker thread: 11 % of X instead of 8 % for a CV path of 13 fits on
        80 000 x 20, K = 3.
        """
        steps = 0
        loss = self.problem.loss
        if product_size(loss.data) >= POLISH_BELOW:
            return theta, f, grad, steps
        fits = ROUNDS_POLISH_BYTES_PER_ENTRY * loss.n_params**2 <= ROUNDS_POLISH_FLOAT64_MAX_BYTES
        dtype = np.float64 if fits else np.float32
        full = False  # whether ``factor`` is of a Hessian on all the rows
        for _ in range(min(ROUNDS_POLISH_STEPS, max_steps)):
            step = -factor.solve(grad)
            if not grad @ step < 0:
                break
            candidate = theta + step
            f_new, grad_new, new_factor = self.evaluate(
                candidate, not full, all_rows=True, dtype=dtype
            )
            gain = np.max(np.abs(grad), initial=0.0) / max(
                np.max(np.abs(grad_new), initial=0.0), np.finfo(np.float64).tiny
            )
            kept = f_new <= f + self.rounding * abs(f) and gain > 1
            if kept:
                theta, f, grad = candidate, f_new, grad_new
                steps += 1
                self.tracer.callback(OptimizeResult(x=theta, fun=f))
            if full and not (kept and gain >= POLISH_GAIN):
                break  # a step with the full Hessian gained little: the floor
            # (after a rejected step: the Hessian at a point close by)
            if not full:
                factor, full = new_factor, True
        return theta, f, grad, steps
