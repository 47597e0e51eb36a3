"""The math kernel against independent references.

References: central finite differences of the objective (for the gradient)
and of the gradient (for the Hessian-vector product); a per-sample loop
written from the textbook formula grad_{w_k} = sum_n s_n x_n (p_nk - y_nk);
and scikit-learn's ``log_loss`` for the objective value.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import logsumexp as scipy_logsumexp
from scipy.special import softmax as scipy_softmax
from sklearn.metrics import log_loss

from skmultilogit import log_softmax, loss_gradient, softmax
from skmultilogit._backends import NumpyBackend
from skmultilogit._conditioning import ConditionedProblem
from skmultilogit._objective import MultinomialLoss


def make_problem(n_classes, n_samples=30, n_features=5, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_features)).astype(dtype)
    X[:, 0] *= 5.0  # unequal feature scales
    y = np.arange(n_samples) % n_classes
    rng.shuffle(y)
    coef = rng.normal(scale=0.7, size=(n_classes, n_features))
    intercept = rng.normal(size=n_classes)
    weights = rng.uniform(0.1, 3.0, size=n_samples)
    return X, y, coef, intercept, weights


def as_format(X, fmt):
    return {"dense": X, "csr": sp.csr_matrix(X), "csc": sp.csc_matrix(X)}[fmt]


def central_difference(fun, x, step):
    """Central differences of a scalar or vector function, one coordinate at a time."""
    columns = []
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = step
        columns.append((np.asarray(fun(x + e)) - np.asarray(fun(x - e))) / (2 * step))
    return np.array(columns)


PARAMS = pytest.mark.parametrize(
    "n_classes, fit_intercept, weighted, C, fmt",
    [
        (K, fi, w, C, fmt)
        for K in (2, 4)
        for fi in (True, False)
        for w in (False, True)
        for C in (0.3, np.inf)
        for fmt in ("dense", "csr", "csc")
    ],
)


@PARAMS
def test_gradient_matches_finite_differences(n_classes, fit_intercept, weighted, C, fmt):
    X, y, coef, intercept, weights = make_problem(n_classes)
    X = as_format(X, fmt)
    sample_weight = weights if weighted else None
    intercept = intercept if fit_intercept else None

    def objective(flat):
        c = flat[: coef.size].reshape(coef.shape)
        b = flat[coef.size :] if fit_intercept else None
        return loss_gradient(c, b, X, y, sample_weight=sample_weight, C=C)[0]

    flat = np.concatenate([coef.ravel(), intercept if fit_intercept else []])
    numeric = central_difference(objective, flat, 1e-6)
    _, grad_coef, grad_intercept = loss_gradient(
        coef, intercept, X, y, sample_weight=sample_weight, C=C
    )
    analytic = np.concatenate([grad_coef.ravel(), grad_intercept if fit_intercept else []])
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-6)
    assert (grad_intercept is None) == (not fit_intercept)


@PARAMS
def test_hessian_vector_product_matches_finite_differences(
    n_classes, fit_intercept, weighted, C, fmt
):
    X, y, coef, intercept, weights = make_problem(n_classes, seed=1)
    X = as_format(X, fmt)
    loss = MultinomialLoss.from_arrays(
        X,
        y,
        n_classes,
        weights if weighted else np.ones(len(y)),
        C,
        fit_intercept=fit_intercept,
    )
    w = loss.pack(coef, intercept)
    rng = np.random.default_rng(2)
    for _ in range(2):  # two directions at one point exercise the cached P
        v = rng.normal(size=loss.n_params)
        step = 1e-5
        numeric = (loss.gradient(w + step * v) - loss.gradient(w - step * v)) / (2 * step)
        np.testing.assert_allclose(loss.hessp(w, v), numeric, rtol=1e-6, atol=1e-6)
    # A new point must not reuse the old probabilities.
    w2 = w + 0.5
    v = rng.normal(size=loss.n_params)
    numeric = (loss.gradient(w2 + 1e-5 * v) - loss.gradient(w2 - 1e-5 * v)) / 2e-5
    np.testing.assert_allclose(loss.hessp(w2, v), numeric, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", ["numpy", "array-api"])
def test_products_bound_to_a_point_stay_there_when_the_point_array_changes(backend):
    # hessp_at(w) serves a conjugate-gradient solve's products at w; the
    # caller's array may be reused for the next iterate meanwhile. The
    # reference: central differences of the gradient at the first point.
    X, y, coef, intercept, weights = make_problem(3, seed=4)
    if backend == "numpy":
        data = NumpyBackend(X, y, 3, weights)
    else:
        xp = pytest.importorskip("array_api_strict")
        from skmultilogit._backends._array_api import ArrayAPIBackend

        data = ArrayAPIBackend(xp.asarray(X), y, 3, weights, xp, None)
    loss = MultinomialLoss.from_data(data, 1.0)
    w = loss.pack(coef, intercept)
    first = w.copy()
    product = loss.hessp_at(w)
    rng = np.random.default_rng(5)
    # (not a constant: one shift of every class's logits leaves P as it is)
    w += rng.normal(size=loss.n_params)
    v = rng.normal(size=loss.n_params)
    numeric = (loss.gradient(first + 1e-5 * v) - loss.gradient(first - 1e-5 * v)) / 2e-5
    np.testing.assert_allclose(product(v), numeric, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("fmt", ["dense", "csr", "csc"])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_hessian_products_after_a_loss_pass_match_finite_differences(
    fmt, fit_intercept, monkeypatch
):
    # A Newton solver's order: products at w (which keeps the probabilities),
    # then a loss and gradient at the next point w2 (which refills them on
    # the way), then products at w2, which must see w2's probabilities. Rows
    # in blocks of 7 (on several threads where BLAS has them), some of
    # weight zero; CSR through its numpy steps (the compiled CSR pass forms
    # no logits and refills nothing).
    from skmultilogit import _threads
    from skmultilogit._backends import _compiled, _numpy

    monkeypatch.setattr(_numpy, "MIN_BLOCK_ROWS", 7)
    monkeypatch.setattr(_numpy, "BLOCK_BYTES", 7 * 5 * 8)
    monkeypatch.setattr(_threads, "ROW_THREADS_FROM", 0)
    monkeypatch.setattr(_compiled, "csr_kernel", lambda data: None)
    X, y, coef, intercept, weights = make_problem(4, seed=3)
    weights[::6] = 0.0
    loss = MultinomialLoss.from_arrays(
        as_format(X, fmt), y, 4, weights, 0.7, fit_intercept=fit_intercept
    )
    assert len(loss.data.row_blocks()) == (5 if fmt == "dense" else 1)
    w = loss.pack(coef, intercept)
    w2 = w + np.random.default_rng(4).normal(scale=0.5, size=w.size)
    v = np.random.default_rng(5).normal(size=w.size)
    numeric = (loss.gradient(w2 + 1e-5 * v) - loss.gradient(w2 - 1e-5 * v)) / 2e-5
    loss.hessp(w, v)
    loss.loss_gradient(w2)
    # the pass refilled the probabilities at w2: the products use those
    np.testing.assert_array_equal(loss.data._proba_cache[0], loss.unpack(w2)[0])
    np.testing.assert_allclose(loss.hessp(w2, v), numeric, rtol=1e-6, atol=1e-6)


def test_probabilities_kept_with_an_intercept_are_not_those_without():
    X, y, coef, intercept, weights = make_problem(3, seed=8)
    data = MultinomialLoss.from_arrays(X, y, 3, weights, 1.0).data
    fresh = MultinomialLoss.from_arrays(X, y, 3, weights, 1.0).data
    direction = np.random.default_rng(9).normal(size=coef.shape)
    data.loss_gradient(coef, intercept)
    data.hessp(coef, intercept, direction, np.zeros(3))
    np.testing.assert_allclose(
        data.hessp(coef, None, direction, None)[0],
        fresh.hessp(coef, None, direction, None)[0],
        rtol=1e-12,
    )


def naive_loss_gradient(coef, intercept, X, y, sample_weight, C):
    """Textbook per-sample loop: loss and grad_{w_k} = sum_n s_n x_n (p_nk - y_nk)."""
    n_classes = coef.shape[0]
    loss = 0.0
    grad_coef = np.zeros_like(coef)
    grad_intercept = np.zeros(n_classes)
    for x_n, y_n, s_n in zip(X, y, sample_weight, strict=True):
        z = coef @ x_n + intercept
        p = np.exp(z - z.max())
        p /= p.sum()
        loss -= s_n * np.log(p[y_n])
        onehot = np.eye(n_classes)[y_n]
        grad_coef += s_n * np.outer(p - onehot, x_n)
        grad_intercept += s_n * (p - onehot)
    return (
        C * loss + 0.5 * np.sum(coef**2),
        C * grad_coef + coef,
        C * grad_intercept,
    )


@pytest.mark.parametrize("n_classes", [2, 3, 7])
def test_matches_per_sample_loop_and_log_loss(n_classes):
    X, y, coef, intercept, weights = make_problem(n_classes, n_samples=40, seed=3)
    C = 2.5
    loss, grad_coef, grad_intercept = loss_gradient(
        coef, intercept, X, y, sample_weight=weights, C=C
    )
    ref_loss, ref_coef, ref_intercept = naive_loss_gradient(coef, intercept, X, y, weights, C)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
    np.testing.assert_allclose(grad_coef, ref_coef, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grad_intercept, ref_intercept, rtol=1e-10, atol=1e-12)

    proba = softmax(X @ coef.T + intercept)
    data_term = log_loss(
        y, proba, sample_weight=weights, normalize=False, labels=np.arange(n_classes)
    )
    np.testing.assert_allclose(loss, C * data_term + 0.5 * np.sum(coef**2), rtol=1e-10)


def test_hand_computed_two_samples():
    # Two samples, two classes, coef zero: P = 1/2 everywhere.
    X = np.array([[1.0, 0.0], [0.0, 2.0]])
    y = np.array([0, 1])
    loss, grad_coef, grad_intercept = loss_gradient(np.zeros((2, 2)), np.zeros(2), X, y, C=3.0)
    assert loss == pytest.approx(3.0 * 2 * np.log(2.0))
    # C * (P - Y)^T X with P - Y = [[-1/2, 1/2], [1/2, -1/2]]
    np.testing.assert_allclose(grad_coef, 3.0 * np.array([[-0.5, 1.0], [0.5, -1.0]]))
    np.testing.assert_allclose(grad_intercept, [0.0, 0.0])


def test_inf_C_is_the_unpenalised_likelihood():
    X, y, coef, intercept, weights = make_problem(3, seed=4)
    loss, grad_coef, _ = loss_gradient(coef, intercept, X, y, sample_weight=weights, C=np.inf)
    ref_loss, ref_coef, _ = naive_loss_gradient(coef, intercept, X, y, weights, 1.0)
    penalty = 0.5 * np.sum(coef**2)
    np.testing.assert_allclose(loss, ref_loss - penalty, rtol=1e-12)
    np.testing.assert_allclose(grad_coef, ref_coef - coef, rtol=1e-10, atol=1e-12)


def test_float32_data_gives_float64_accurate_gradient():
    X, y, coef, intercept, weights = make_problem(4, n_samples=200, seed=5)
    X32 = X.astype(np.float32)
    ref = loss_gradient(coef, intercept, X32.astype(np.float64), y, sample_weight=weights)
    got = loss_gradient(coef, intercept, X32, y, sample_weight=weights)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-6)
    np.testing.assert_allclose(got[1], ref[1], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got[2], ref[2], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("margin", [12.0, 18.0])
@pytest.mark.parametrize("fmt", ["dense", "csr"])
def test_float32_data_keeps_the_gradient_of_confident_rows(margin, fmt):
    # Every row right by a margin: 1 - p_y is 1e-5 to 1e-8, at or below
    # float32's resolution next to 1. The loss and gradient must keep their
    # own relative precision (float32 X's products give ~1e-7), not the
    # absolute precision of p_y - 1 computed in float32.
    rng = np.random.default_rng(7)
    n, K = 2000, 3
    y = rng.integers(0, K, n)
    X32 = (np.eye(K)[y] * margin + 0.5 * rng.standard_normal((n, K))).astype(np.float32)
    X = X32.astype(np.float64)
    coef, intercept = np.eye(K), np.zeros(K)
    logits = X @ coef.T
    expected_loss = np.sum(scipy_logsumexp(logits, axis=1) - logits[np.arange(n), y])
    residual = scipy_softmax(logits, axis=1) - np.eye(K)[y]
    data = sp.csr_matrix(X32) if fmt == "csr" else X32
    loss, grad_coef, grad_intercept = loss_gradient(coef, intercept, data, y, C=np.inf)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
    scale = np.abs(residual.T @ X).max()
    np.testing.assert_allclose(grad_coef, residual.T @ X, rtol=0, atol=1e-5 * scale)
    scale = np.abs(residual.sum(axis=0)).max()
    np.testing.assert_allclose(grad_intercept, residual.sum(axis=0), rtol=0, atol=1e-5 * scale)


def test_extreme_logits_stay_finite():
    X, y, coef, intercept, _ = make_problem(3, seed=6)
    loss, grad_coef, grad_intercept = loss_gradient(1e4 * coef, intercept, X, y)
    assert np.isfinite(loss) and loss > 0
    assert np.all(np.isfinite(grad_coef)) and np.all(np.isfinite(grad_intercept))
    # and right: logits of 1e4 against scipy's log-sum-exp and softmax
    logits = X @ (1e4 * coef).T + intercept
    expected = np.sum(scipy_logsumexp(logits, axis=1) - logits[np.arange(len(y)), y])
    np.testing.assert_allclose(loss, expected + 0.5 * np.sum((1e4 * coef) ** 2), rtol=1e-12)
    residual = scipy_softmax(logits, axis=1) - np.eye(3)[y]
    np.testing.assert_allclose(grad_coef, residual.T @ X + 1e4 * coef, rtol=1e-10)
    np.testing.assert_allclose(grad_intercept, residual.sum(axis=0), rtol=1e-10, atol=1e-12)
    # Where the true class has probability far below the smallest double,
    # -log P is still computed exactly as logsumexp(z) - z_y.
    X = np.array([[1.0]])
    loss, _, _ = loss_gradient(np.array([[1000.0], [0.0]]), None, X, np.array([1]), C=np.inf)
    assert loss == pytest.approx(1000.0)


def test_softmax_and_log_softmax_are_stable():
    z = np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]])
    np.testing.assert_allclose(softmax(z).sum(axis=1), 1.0)
    log_p = log_softmax(z)
    assert np.all(np.isfinite(log_p))
    np.testing.assert_allclose(log_p[0], [0.0, -1000.0, -2000.0])
    np.testing.assert_allclose(np.exp(log_p[1]), softmax(z)[1])
    assert softmax(z.astype(np.float32)).dtype == np.float32


@pytest.mark.parametrize("function", [softmax, log_softmax])
@pytest.mark.parametrize("shape", [(3,), (2, 0), (2, 3, 4), ()])
def test_softmax_refuses_logits_that_are_not_rows_of_classes(function, shape):
    with pytest.raises(ValueError, match=r"2-D array of shape \(n_samples, n_classes\)"):
        function(np.zeros(shape))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(coef=np.zeros(3)), "coef must be 2-d"),
        (dict(coef=np.zeros((1, 2))), "at least 2 rows"),
        (dict(X=np.zeros((4, 3))), "3 columns|columns to match"),
        (dict(y=np.array([0, 1, 2, 1])), r"class indices in 0\.\.1"),
        (dict(y=np.array([0, 1])), "y must have shape"),
        (dict(intercept=np.zeros(3)), "intercept must have shape"),
        (dict(sample_weight=np.ones(3)), "sample_weight must have shape"),
        (dict(sample_weight=np.array([1.0, -1.0, 1.0, 1.0])), "finite and non-negative"),
        (dict(sample_weight=np.array([1.0, np.nan, 1.0, 1.0])), "finite and non-negative"),
        (dict(X=np.array([[1.0, np.nan]] * 4)), "NaN or infinity"),
        (dict(X=sp.csr_matrix(np.array([[1.0, np.inf]] * 4))), "NaN or infinity"),
        (dict(X=np.ones((4, 2)) + 1j), "real numbers"),
        (dict(X=sp.csc_matrix((np.ones(2), [0, 70], [0, 1, 2]), shape=(4, 2))), "row indices"),
        (dict(X=sp.csr_matrix((np.ones(2), [0, 5], [0, 1, 2, 2, 2]), shape=(4, 2))), "column"),
        (dict(C=0.0), "C must be positive"),
        (dict(y=np.array(["a", "b", "a", "b"])), "integer class indices.*encode labels"),
        (dict(y=np.array([0.0, 1.5, 0.0, 1.0])), "integer class indices"),
    ],
)
def test_kernel_rejects_bad_input(kwargs, match):
    args = dict(
        coef=np.zeros((2, 2)),
        intercept=np.zeros(2),
        X=np.ones((4, 2)),
        y=np.array([0, 1, 0, 1]),
        sample_weight=None,
        C=1.0,
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        loss_gradient(
            args["coef"],
            args["intercept"],
            args["X"],
            args["y"],
            sample_weight=args["sample_weight"],
            C=args["C"],
        )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_row_blocks_add_up_to_the_whole(monkeypatch, dtype):
    import skmultilogit._backends._numpy as kernel

    monkeypatch.setattr(kernel, "BLOCK_BYTES", 1)
    monkeypatch.setattr(kernel, "MIN_BLOCK_ROWS", 7)  # 40 rows: blocks of 7, last of 5
    X, y, coef, intercept, weights = make_problem(3, n_samples=40, seed=8)
    X = X.astype(dtype)
    loss = MultinomialLoss.from_arrays(X, y, 3, weights, 2.5)
    assert len(loss.data.row_blocks()) == 6
    w = loss.pack(coef, intercept)
    f, grad = loss.loss_gradient(w)
    ref_loss, ref_coef, ref_intercept = naive_loss_gradient(
        coef, intercept, X.astype(np.float64), y, weights, 2.5
    )
    rtol = 1e-10 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(f, ref_loss, rtol=rtol)
    ref_grad = np.concatenate([ref_coef.ravel(), ref_intercept])
    np.testing.assert_allclose(grad, ref_grad, rtol=rtol, atol=rtol)
    v = np.random.default_rng(9).normal(size=loss.n_params)
    # float64: finite differences of the gradient; float32: those would drown
    # in float32 noise, so compare with the (differences-checked) float64 kernel.
    X64 = X.astype(np.float64)
    reference = MultinomialLoss.from_arrays(X64, y, 3, weights, 2.5)
    expected = (reference.gradient(w + 1e-5 * v) - reference.gradient(w - 1e-5 * v)) / 2e-5
    hv_rtol = 1e-5 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(loss.hessp(w, v), expected, rtol=hv_rtol, atol=1e-6)


@pytest.mark.parametrize("n_features", [5, 30])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_float32_passes_either_side_of_the_row_major_rule(monkeypatch, n_features, fit_intercept):
    # K = 3: 30 features take the logits row-major first, 5 do not
    # (_loss.ROW_MAJOR_FEATURES_PER_CLASS); in blocks of 7 rows (last of 5),
    # so that the reused temporaries change shape. Both against the textbook
    # loop in float64, to float32's resolution.
    import skmultilogit._backends._numpy as backend
    from skmultilogit import _loss
    from skmultilogit._backends import _compiled

    # the numpy steps (the compiled dense passes take C-ordered float32 X)
    monkeypatch.setattr(_compiled, "dense_kernel", lambda data: None)
    monkeypatch.setattr(backend, "BLOCK_BYTES", 1)
    monkeypatch.setattr(backend, "MIN_BLOCK_ROWS", 7)
    row_major_calls = []
    row_major_first = _loss._row_major_first_logits

    def spy(*args):
        row_major_calls.append(args[0].shape)
        return row_major_first(*args)

    monkeypatch.setattr(_loss, "_row_major_first_logits", spy)
    X, y, coef, intercept, weights = make_problem(3, n_samples=40, n_features=n_features, seed=12)
    if not fit_intercept:
        intercept = np.zeros(3)
    X32 = X.astype(np.float32)
    loss = MultinomialLoss.from_arrays(X32, y, 3, weights, 2.5, fit_intercept=fit_intercept)
    w = loss.pack(coef, intercept if fit_intercept else None)
    f, grad = loss.loss_gradient(w)
    assert bool(row_major_calls) == (n_features >= _loss.ROW_MAJOR_FEATURES_PER_CLASS * 3)
    X64 = X32.astype(np.float64)
    ref_loss, ref_coef, ref_intercept = naive_loss_gradient(coef, intercept, X64, y, weights, 2.5)
    np.testing.assert_allclose(f, ref_loss, rtol=1e-5)
    ref_grad = ref_coef.ravel()
    if fit_intercept:
        ref_grad = np.concatenate([ref_grad, ref_intercept])
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-5 * np.abs(ref_grad).max())
    # the Hessian product against the float64 one, itself checked by finite differences above
    reference = MultinomialLoss.from_arrays(X64, y, 3, weights, 2.5, fit_intercept=fit_intercept)
    v = np.random.default_rng(13).normal(size=loss.n_params)
    expected = reference.hessp(w, v)
    np.testing.assert_allclose(loss.hessp(w, v), expected, atol=1e-5 * np.abs(expected).max())


def full_hessian(H):
    """The symmetric matrix from the upper triangle ``hessian`` returns."""
    return np.triu(H) + np.triu(H, 1).T


@PARAMS
def test_full_hessian_matches_finite_differences_of_the_gradient(
    n_classes, fit_intercept, weighted, C, fmt
):
    X, y, coef, intercept, weights = make_problem(n_classes, seed=4)
    loss = MultinomialLoss.from_arrays(
        as_format(X, fmt),
        y,
        n_classes,
        weights if weighted else np.ones(len(y)),
        C,
        fit_intercept=fit_intercept,
    )
    w = loss.pack(coef, intercept)
    numeric = central_difference(loss.gradient, w, 1e-6)
    hessian = full_hessian(loss.hessian(w))
    np.testing.assert_allclose(hessian, numeric, rtol=1e-6, atol=1e-6)
    # float32 accumulation: a preconditioner's accuracy, not an exact Hessian
    rough = full_hessian(loss.hessian(w, dtype=np.float32))
    np.testing.assert_allclose(rough, numeric, rtol=1e-4, atol=1e-4 * np.abs(numeric).max())


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("zero_coef", [False, True])
def test_hessian_for_transformed_features_matches_the_transformed_problem(fit_intercept, zero_coef):
    # Independent reference: the plain Hessian of the same model written on
    # explicitly transformed features X_hat = (X - center) / scale.
    X, y, coef, intercept, weights = make_problem(4, n_samples=50, seed=5)
    X = X + 3.0
    center = X.mean(axis=0) if fit_intercept else np.zeros(X.shape[1])
    scale = np.linspace(0.5, 4.0, X.shape[1])
    if zero_coef:  # the Kronecker shortcut
        coef = np.zeros_like(coef)
    loss = MultinomialLoss.from_arrays(X, y, 4, weights, 0.4, fit_intercept=fit_intercept)
    w = loss.pack(coef, intercept)
    conditioned = ConditionedProblem(loss, center, scale)
    theta = conditioned.to_conditioned(w)
    hessian = full_hessian(conditioned.data_hessian(theta)) + np.diag(
        conditioned.penalty_diagonal()
    )

    X_hat = (X - center) / scale
    on_hat = MultinomialLoss.from_arrays(X_hat, y, 4, weights, 0.4, fit_intercept=fit_intercept)
    dir_coef = coef * scale
    # same logits: X W^T + b = X_hat V^T + c with V = W scale, c = b + W center
    w_hat = on_hat.pack(dir_coef, None if intercept is None else intercept + coef @ center)
    reference = central_difference(on_hat.gradient, w_hat, 1e-6)
    # the penalty is 1/2 ||W||^2 = 1/2 ||V / scale||^2, not 1/2 ||V||^2
    n_coef = coef.size
    reference[np.arange(n_coef), np.arange(n_coef)] += np.tile(scale**-2, 4) - 1.0
    np.testing.assert_allclose(hessian, reference, rtol=1e-6, atol=1e-6)


def textbook_hessian(X, y, n_classes, weights, C, coef, intercept):
    """``C sum_i s_i (diag(p_i) - p_i p_i^T) (x) x^_i x^_i^T``, one sample at a time."""
    design = X if intercept is None else np.hstack([X, np.ones((len(X), 1))])
    d = X.shape[1]
    proba = scipy_softmax(X @ coef.T + (0.0 if intercept is None else intercept), axis=1)
    size = design.shape[1]
    full = np.zeros((n_classes * size, n_classes * size))
    for x, p, s in zip(design, proba, weights, strict=True):
        full += C * s * np.kron(np.diag(p) - np.outer(p, p), np.outer(x, x))
    if intercept is None:
        return full
    # from class-major [w_k, b_k] blocks to the flat order: all coefficients, then intercepts
    order = [k * size + j for k in range(n_classes) for j in range(d)]
    order += [k * size + d for k in range(n_classes)]
    return full[np.ix_(order, order)]


@pytest.mark.parametrize("n_classes", [2, 3, 5])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("fmt", ["dense", "csr"])
@pytest.mark.parametrize("n_features", [4, 60])
def test_hessian_from_class_pairs_equals_the_textbook_sum(
    n_classes, fit_intercept, dtype, fmt, n_features
):
    # The Hessian is built from its blocks above the diagonal alone, the
    # diagonal blocks from M_kk = -sum_{l != k} M_kl (which only the math
    # guarantees); the reference is the per-sample Kronecker sum. The three
    # ways of forming the pairs: a product per class (K = 2, 3 with 4
    # features), a rank update per pair (K = 2, 3 with 60), one rank update
    # of the classes' stacked rows (K = 5; see also the test below).
    X, y, coef, intercept, weights = make_problem(
        n_classes, n_samples=80, n_features=n_features, seed=9
    )
    intercept = intercept if fit_intercept else None
    loss = MultinomialLoss.from_arrays(
        as_format(X, fmt), y, n_classes, weights, 1.5, fit_intercept=fit_intercept
    )
    hessian = loss.data.hessian(coef, intercept, dtype=dtype)
    assert hessian.dtype == dtype and hessian.flags.f_contiguous
    expected = textbook_hessian(X, y, n_classes, weights, 1.5, coef, intercept)
    atol = (1e-13 if dtype == np.float64 else 1e-6) * np.abs(expected).max()
    np.testing.assert_allclose(full_hessian(hessian), expected, rtol=0, atol=atol)


@pytest.mark.parametrize("stacked", [True, False])
@pytest.mark.parametrize("n_features, n_classes", [(3, 2), (6, 4), (60, 6)])
def test_both_ways_of_summing_the_class_pairs_give_the_textbook_hessian(
    monkeypatch, stacked, n_features, n_classes
):
    # Each way on each shape, whatever the rule that chooses between them.
    from skmultilogit import _hessian

    monkeypatch.setattr(_hessian, "stacks_classes", lambda n_classes, size: stacked)
    # the stacked rows formed 64 at a time: several updates per row block
    monkeypatch.setattr(_hessian, "STACKED_BLOCK_BYTES", 4096)
    X, y, coef, intercept, weights = make_problem(
        n_classes, n_samples=700, n_features=n_features, seed=12
    )
    loss = MultinomialLoss.from_arrays(X, y, n_classes, weights, 0.7)
    assert _hessian.ClassPairSums(n_classes, n_features + 1, np.float64).stacked is stacked
    hessian = loss.data.hessian(coef, intercept, dtype=np.float64)
    expected = textbook_hessian(X, y, n_classes, weights, 0.7, coef, intercept)
    np.testing.assert_allclose(
        full_hessian(hessian), expected, rtol=0, atol=1e-13 * np.abs(expected).max()
    )


@pytest.mark.parametrize("stacked", [True, False])
@pytest.mark.parametrize("n_features, n_classes", [(6, 4), (60, 3), (3, 3)])
def test_confident_rows_hand_blas_no_subnormal_numbers(monkeypatch, stacked, n_features, n_classes):
    # Probabilities of confidently classified rows (1e-40 and below) are
    # subnormal in float32, where BLAS's products run many times slower: no
    # factor handed to BLAS is subnormal, and the float32 Hessian is still
    # the textbook one to float32's resolution. The spy sees the two ways
    # that call syrk (stacked rows, a rank update per pair); the third (a
    # numpy product per class) is checked for its values only.
    from scipy.linalg import blas as scipy_blas

    from skmultilogit import _hessian

    monkeypatch.setattr(_hessian, "stacks_classes", lambda n_classes, size: stacked)
    tiny = np.finfo(np.float32).tiny
    seen = []

    def spy(name):
        real = getattr(scipy_blas, name)

        def call(*args, **kwargs):
            for array in (a for a in args if isinstance(a, np.ndarray) and a.dtype == np.float32):
                magnitude = np.abs(array)
                seen.append(bool(np.any((magnitude > 0) & (magnitude < tiny))))
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(
        _hessian, "blas", type("Blas", (), {"ssyrk": spy("ssyrk"), "dsyrk": scipy_blas.dsyrk})
    )
    X, y, coef, intercept, weights = make_problem(
        n_classes, n_samples=300, n_features=n_features, seed=13
    )
    coef = coef * 40.0  # margins of hundreds: probabilities down to 1e-100 and below
    loss = MultinomialLoss.from_arrays(X, y, n_classes, weights, 1.0)
    proba = scipy_softmax(X @ coef.T + intercept, axis=1)
    assert np.any((proba > 0) & (proba < tiny))
    hessian = loss.data.hessian(coef, intercept, dtype=np.float32)
    if stacked or n_features >= _hessian.PAIR_SYRK_MIN_COLUMNS:
        assert seen and not any(seen)
    expected = textbook_hessian(X, y, n_classes, weights, 1.0, coef, intercept)
    np.testing.assert_allclose(
        full_hessian(hessian), expected, rtol=0, atol=1e-6 * np.abs(expected).max()
    )


def test_only_factors_whose_products_would_be_subnormal_are_dropped():
    # sqrt of float32's smallest normal number is 1.08e-19: a factor of
    # 1e-18 still carries curvature (times a factor of 1, a normal 1e-18);
    # without a penalty that can be all a class has.
    from skmultilogit import _omission

    factors = np.array([1e-18, -1e-18, 2e-20, -2e-20, 0.0, 1.0], dtype=np.float32)
    _omission.flush_tiny(factors)
    np.testing.assert_array_equal(factors, np.float32([1e-18, -1e-18, 0, 0, 0, 1]))
    wide = _omission.flush_tiny(np.array([1e-150, 1e-160]))
    np.testing.assert_array_equal(wide, [1e-150, 0.0])


def test_class_pairs_travel_as_their_triangles():
    # What a Dask worker sends: each pair's upper triangle, unpacked on the client.
    from skmultilogit._hessian import class_pair_hessian, pack_class_pairs, unpack_class_pairs

    X, y, coef, intercept, weights = make_problem(4, n_samples=60, n_features=3, seed=10)
    loss = MultinomialLoss.from_arrays(X, y, 4, weights, 1.0)
    pairs = loss.data.class_pairs(coef, intercept)
    packed = pack_class_pairs(pairs)
    assert packed.shape == (4 * 3 // 2 * 4 * 5 // 2,)
    rebuilt = class_pair_hessian(unpack_class_pairs(packed, 4, 4, np.float64), 4, 3, True)
    expected = textbook_hessian(X, y, 4, weights, 1.0, coef, intercept)
    np.testing.assert_allclose(full_hessian(rebuilt), expected, rtol=0, atol=1e-13)


def test_sub_sampled_hessian_is_the_hessian_of_the_reweighted_rows():
    X, y, coef, intercept, weights = make_problem(3, n_samples=60, seed=6)
    loss = MultinomialLoss.from_arrays(X, y, 3, weights, 2.0)
    rows = np.array([1, 5, 6, 20, 41, 59])
    factor = np.array([1.0, 2.0, 0.5, 3.0, 1.0, 10.0])
    part = MultinomialLoss.from_arrays(X[rows], y[rows], 3, weights[rows] * factor, 2.0)
    np.testing.assert_allclose(
        full_hessian(loss.data.hessian(coef, intercept, rows=rows, row_factor=factor)),
        full_hessian(part.data.hessian(coef, intercept)),
        rtol=1e-12,
        atol=1e-12,
    )


def test_curvature_is_the_trace_of_each_samples_logit_hessian():
    X, y, coef, intercept, weights = make_problem(5, seed=7)
    loss = MultinomialLoss.from_arrays(sp.csr_matrix(X), y, 5, weights, 3.0)
    proba = softmax(X @ coef.T + intercept)
    expected = [
        3.0 * s * np.trace(np.diag(p) - np.outer(p, p)) for s, p in zip(weights, proba, strict=True)
    ]
    np.testing.assert_allclose(loss.data.curvature(coef, intercept), expected, rtol=1e-12)


@pytest.mark.parametrize("n_classes, n_features", [(2, 4), (4, 6), (10, 60)])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("allowed", [1e-3, 0.1])
@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "numpy"])
def test_a_hessian_that_may_leave_terms_out_misses_a_semidefinite_part_within_the_allowance(
    monkeypatch, n_classes, n_features, fit_intercept, dtype, allowed, compiled
):
    # What it leaves out is the textbook Hessian minus what it returns:
    # never negative (only whole semidefinite terms are dropped), of
    # spectral norm at most ``omit`` over all row blocks together (each
    # block leaves out only its rows' share; 256-row blocks here), and, as
    # float64 resolves, not nothing (confident rows: most of their pairs'
    # terms are tiny).
    from skmultilogit import _omission

    if not compiled:
        monkeypatch.setattr(_omission, "_kernel", None)
    elif _omission._kernel is None:
        pytest.skip("the compiled extension is not built")
    monkeypatch.setattr(_omission, "omitting_block_rows", lambda *shape: 256)
    # on these small problems too, and whatever share of the terms it keeps
    monkeypatch.setattr(_omission, "OMITTING_MIN_ROWS", 0)
    monkeypatch.setattr(_omission, "OMITTING_MAX_KEPT", 1.0)
    X, y, coef, intercept, weights = make_problem(
        n_classes, n_samples=700, n_features=n_features, seed=21
    )
    coef = coef * 4.0
    intercept = intercept if fit_intercept else None
    loss = MultinomialLoss.from_arrays(X, y, n_classes, weights, 1.0, fit_intercept=fit_intercept)
    expected = textbook_hessian(X, y, n_classes, weights, 1.0, coef, intercept)
    size = np.linalg.norm(expected, 2)
    omit = allowed * size
    hessian = loss.data.hessian(coef, intercept, dtype=dtype, omit=omit)
    left_out = np.linalg.eigvalsh(expected - full_hessian(hessian))
    rounding = (1e-12 if dtype == np.float64 else 1e-5) * size
    assert left_out.min() >= -rounding
    assert left_out.max() <= omit + rounding
    if dtype == np.float64:
        assert left_out.max() > 1e6 * rounding


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_omission_threshold_is_the_largest_power_of_two_within_the_allowance(dtype):
    # Brute force over the sizes: those below t sum to at most omit, those
    # below 2 t do not (0: the subnormal ones alone exceed omit; inf: all
    # of them fit).
    from skmultilogit._omission import omission_threshold

    rng = np.random.default_rng(3)
    for _ in range(300):
        shape = rng.integers(1, 8), rng.integers(1, 20)
        sizes = np.exp(rng.uniform(-110, 5, size=shape)) * (rng.random(shape) > 0.1)
        sizes = sizes.astype(dtype)
        sizes[rng.random(shape) < 0.05] = -0.0  # a weight of -0.0 passes validation
        omit = np.exp(rng.uniform(-120, 6))
        threshold, kept = omission_threshold(sizes, np.ones(shape[1], dtype), omit)
        assert kept == np.count_nonzero(sizes >= threshold)
        if threshold == 0:
            assert sizes[sizes < np.finfo(dtype).tiny].sum(dtype=np.float64) > omit
        elif threshold == np.inf:
            assert sizes.sum() <= omit
        else:
            assert np.frexp(threshold)[0] == 0.5  # a power of 2
            assert sizes[sizes < threshold].sum(dtype=np.float64) <= omit
            assert sizes[sizes < 2 * threshold].sum(dtype=np.float64) > omit
