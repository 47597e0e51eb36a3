"""cyanure as a peer in the time-to-gap benchmark, on exactly our objective.

cyanure (inria-thoth) minimises ``(1/n) sum_i loss_i + (lambda / 2) ||W||^2``
with an unpenalised intercept. Ours is ``C sum_i loss_i + 1/2 ||W||^2``,
which is ``C n`` times that with ``lambda = 1 / (C n)``: the same optimum.
The harness evaluates every fit with our objective and the same reference
optimum, so a wrong mapping would show as a gap that never closes.

Optional: the harness adds cyanure's runs only where ``import cyanure``
works (the ``benchmarks`` extra installs it).
"""

import numpy as np

try:
    from cyanure.estimators import Classifier
except ImportError:  # pragma: no cover - an optional peer
    Classifier = None

CYANURE = "cyanure"
# Its quasi-Newton and Catalyst accelerations of MISO and SVRG, the fastest
# multinomial solvers in its own benchmarks, and its default ("auto").
CYANURE_SOLVERS = ("auto", "qning-miso", "qning-svrg", "catalyst-miso")
CYANURE_QUICK_SOLVERS = ("auto",)
CYANURE_MAX_ITER = 1_000  # epochs


def available():
    """Whether cyanure can be imported here."""
    return Classifier is not None


class CyanureMultinomial:
    """cyanure's multinomial logistic regression, read back in our coefficient layout.

    Parameters
    ----------
    C : float
        Our ``C``; cyanure gets ``lambda_1 = 1 / (C n)``.
    solver, tol, max_iter
        cyanure's.
    n_threads : int
        cyanure's own OpenMP threads (-1: all cores).

    Attributes after ``fit``: ``coef_`` (K, d), ``intercept_`` (K,),
    ``classes_`` and ``n_iter_``, as the harness reads them from every peer.
    """

    def __init__(self, C=1.0, solver="auto", tol=1e-4, max_iter=CYANURE_MAX_ITER, n_threads=1):
        self.C = C
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter
        self.n_threads = n_threads

    def fit(self, X, y):
        n_samples, n_features = X.shape
        model = Classifier(
            loss="multiclass-logistic",
            penalty="l2",
            lambda_1=1.0 / (self.C * n_samples),
            fit_intercept=True,
            tol=self.tol,
            solver=self.solver,
            max_iter=self.max_iter,
            n_threads=self.n_threads,
            multi_class="multinomial",
            verbose=False,
        )
        model.fit(X, y)
        self.classes_ = np.unique(y)
        n_classes = len(self.classes_)
        coef = np.asarray(model.coef_, dtype=np.float64)
        if coef.shape != (n_classes, n_features):
            coef = coef.T
        if coef.shape != (n_classes, n_features):
            raise ValueError(f"cyanure returned coef_ of shape {np.shape(model.coef_)}")
        self.coef_ = coef
        self.intercept_ = np.asarray(model.intercept_, dtype=np.float64).reshape(n_classes)
        self.n_iter_ = np.atleast_1d(np.asarray(model.n_iter_)).astype(int)
        return self

    def score(self, X, y):
        """Accuracy of the arg-max class."""
        raw = np.asarray(X @ self.coef_.T) + self.intercept_
        return float(np.mean(self.classes_[np.argmax(raw, axis=1)] == np.asarray(y)))
