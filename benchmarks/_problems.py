"""Benchmark problems: the 8x8 digits in three forms and three synthetic problems.

Every problem is one 75/25 train/test split with a fixed seed, so repeated
invocations (and the two libraries) see identical data.

Digits
------
``load_digits`` (1797 x 64, K = 10), stratified split with ``random_state=0``:

``raw``
    Pixel values 0..16: poorly scaled, with constant columns.
``standardised``
    ``StandardScaler`` fitted on the training part.
``binarised``
    ``X > 7`` as 0/1 floats.

Synthetic problems
------------------
Drawn from a multinomial logit model: features ``X``, true weights ``W0`` with
i.i.d. N(0, 1) entries and an intercept ``b0 ~ N(0, 0.5^2)``, labels sampled
from ``softmax(s X W0^T + b0)``. The signal scale ``s`` is set (by bisection
on the drawn sample) so that the Bayes accuracy ``mean_i max_k P_ik`` of the
true model is :data:`BAYES_ACCURACY`: the classes overlap, so no problem is
separable and the optimum is well inside the data, as in real data.

``dense``
    100 000 x 100, ``X ~ N(0, 1)``, K = 10.
``sparse``
    CSR 20 000 x 5 000 with density 0.5 % (about 25 stored entries per row)
    at uniformly random positions; the values are positive and heavy-tailed,
    ``exp(N(0, 1))``, like tf-idf weights of a bag of words. K = 20. The
    features are not centred, and each appears in only about 100 rows.
``many_classes``
    30 000 x 40, ``X ~ N(0, 1)``, K = 50.

``quick=True`` builds smaller versions of the synthetic problems from the same
generator and seed: a tenth of the rows (10 000 x 100, 3 000 x 40) and, for
``sparse``, 2 000 x 500 at density 5 % (still about 25 entries per row, and
a tenth of the features so that the fit time shrinks with the rows).

All problems use ``C = 1``. On the synthetic problems this is a weak penalty
next to the data term (tens of thousands of samples), the regime where
solvers differ most, and no worse a choice for prediction: over ``C`` in
0.01 .. 10 the test accuracy at ``C = 1`` was within one point of the best on
each of them (0.747 on ``dense``, 0.727 on ``many_classes``, 0.322 on
``sparse`` against 0.332 at ``C = 0.1``). On ``sparse`` the test accuracy is
far below the Bayes accuracy because 15 000 training rows cannot pin down
100 020 parameters; the penalty keeps the problem strongly convex all the same.
"""

import functools
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

BAYES_ACCURACY = 0.75
TEST_SIZE = 0.25
SPLIT_SEED = 0


@dataclass(frozen=True)
class Problem:
    """A train/test classification problem.

    ``info`` holds what describes the problem in the JSON output (shape,
    density, generator parameters).
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    info: dict = field(default_factory=dict)

    @property
    def n_features(self):
        return self.X_train.shape[1]

    @property
    def n_classes(self):
        return len(np.unique(self.y_train))

    def describe(self):
        """Shape and data facts of the problem, for the report and the JSON."""
        X = self.X_train
        return {
            "name": self.name,
            "n_train": X.shape[0],
            "n_test": self.X_test.shape[0],
            "n_features": self.n_features,
            "n_classes": self.n_classes,
            "format": "csr" if sp.issparse(X) else "dense",
            "density": X.nnz / (X.shape[0] * X.shape[1]) if sp.issparse(X) else 1.0,
        } | self.info


# --------------------------------------------------------------------------
# Digits
# --------------------------------------------------------------------------


@functools.cache
def _digits_split():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=TEST_SIZE, random_state=SPLIT_SEED, stratify=y)


def digits_raw(quick=False):
    """Digits with raw pixel values 0..16 (``quick`` changes nothing)."""
    X_train, X_test, y_train, y_test = _digits_split()
    return Problem("raw", X_train, y_train, X_test, y_test, {"source": "load_digits"})


def digits_standardised(quick=False):
    """Digits standardised with statistics of the training part."""
    X_train, X_test, y_train, y_test = _digits_split()
    scaler = StandardScaler().fit(X_train)
    return Problem(
        "standardised",
        scaler.transform(X_train),
        y_train,
        scaler.transform(X_test),
        y_test,
        {"source": "load_digits, StandardScaler"},
    )


def digits_binarised(quick=False):
    """Digits as binary pixels, ``X > 7``."""
    X_train, X_test, y_train, y_test = _digits_split()
    binarise = lambda X: (X > 7).astype(float)  # noqa: E731
    return Problem(
        "binarised",
        binarise(X_train),
        y_train,
        binarise(X_test),
        y_test,
        {"source": "load_digits, X > 7"},
    )


# --------------------------------------------------------------------------
# Synthetic problems from a multinomial logit model
# --------------------------------------------------------------------------


def _bayes_accuracy(logits):
    """Expected accuracy of the Bayes rule ``argmax_k P_ik``: ``mean_i max_k P_ik``."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    proba = np.exp(shifted)
    proba /= proba.sum(axis=1, keepdims=True)
    return float(proba.max(axis=1).mean())


def _signal_scale(base_logits, intercept, target, iterations=40):
    """Scale ``s`` with Bayes accuracy of ``s * base_logits + intercept`` at ``target``.

    Bisection on ``log s``; the accuracy grows with ``s`` from about 1/K.
    """
    low, high = -10.0, 10.0
    for _ in range(iterations):
        mid = 0.5 * (low + high)
        if _bayes_accuracy(np.exp(mid) * base_logits + intercept) < target:
            low = mid
        else:
            high = mid
    return float(np.exp(0.5 * (low + high)))


def _sample_labels(rng, logits):
    """One label per row, drawn from ``softmax(logits)`` by inverting the CDF."""
    proba = np.exp(logits - logits.max(axis=1, keepdims=True))
    cdf = np.cumsum(proba, axis=1)
    u = rng.random(len(logits)) * cdf[:, -1]
    labels = (cdf < u[:, None]).sum(axis=1)
    return np.minimum(labels, logits.shape[1] - 1)


def multinomial_logit_problem(name, X, n_classes, seed, extra_info):
    """Labels for ``X`` from a random multinomial logit model, and a 75/25 split.

    The true model is ``softmax(s X W0^T + b0)`` with ``W0 ~ N(0, 1)``,
    ``b0 ~ N(0, 0.5^2)`` and ``s`` set so that the Bayes accuracy is
    :data:`BAYES_ACCURACY`.
    """
    rng = np.random.default_rng(seed)
    coef = rng.standard_normal((n_classes, X.shape[1]))
    intercept = 0.5 * rng.standard_normal(n_classes)
    base_logits = np.asarray(X @ coef.T)
    scale = _signal_scale(base_logits, intercept, BAYES_ACCURACY)
    logits = scale * base_logits + intercept
    y = _sample_labels(rng, logits)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=TEST_SIZE, random_state=SPLIT_SEED, stratify=y
    )
    info = {
        "source": "multinomial logit model",
        "seed": seed,
        "signal_scale": scale,
        "bayes_accuracy": _bayes_accuracy(logits),
        "smallest_class_fraction": float(np.bincount(y).min() / len(y)),
    } | extra_info
    return Problem(name, X_train, y_train, X_test, y_test, info)


def synthetic_dense(quick=False):
    """100 000 x 100 Gaussian features, K = 10 (quick: 10 000 rows)."""
    seed = 1
    n_samples = 10_000 if quick else 100_000
    X = np.random.default_rng([seed, 0]).standard_normal((n_samples, 100))
    return multinomial_logit_problem("dense", X, 10, seed, {"features": "N(0, 1)"})


def synthetic_sparse(quick=False):
    """CSR 20 000 x 5 000, density 0.5 %, K = 20 (quick: 2 000 x 500, density 5 %)."""
    seed = 2
    n_samples, n_features, density = (2_000, 500, 0.05) if quick else (20_000, 5_000, 0.005)
    rng = np.random.default_rng([seed, 0])
    X = sp.random_array(
        (n_samples, n_features),
        density=density,
        format="csr",
        rng=rng,
        data_sampler=lambda size: rng.lognormal(0.0, 1.0, size),
    )
    X = sp.csr_matrix(X)  # the matrix interface, which every version of both libraries accepts
    X.sort_indices()
    info = {"features": "exp(N(0, 1)) at uniformly random positions", "nominal_density": density}
    return multinomial_logit_problem("sparse", X, 20, seed, info)


def synthetic_many_classes(quick=False):
    """30 000 x 40 Gaussian features, K = 50 (quick: 3 000 rows)."""
    seed = 3
    n_samples = 3_000 if quick else 30_000
    X = np.random.default_rng([seed, 0]).standard_normal((n_samples, 40))
    return multinomial_logit_problem("many_classes", X, 50, seed, {"features": "N(0, 1)"})


DIGITS_BUILDERS = {
    "raw": digits_raw,
    "standardised": digits_standardised,
    "binarised": digits_binarised,
}
SYNTHETIC_BUILDERS = {
    "dense": synthetic_dense,
    "sparse": synthetic_sparse,
    "many_classes": synthetic_many_classes,
}
PROBLEM_BUILDERS = DIGITS_BUILDERS | SYNTHETIC_BUILDERS
