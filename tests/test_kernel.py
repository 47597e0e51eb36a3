"""The compiled element-wise loops (``skmultilogit._kernel``) against numpy.

References: numpy's ``exp`` for the loops' own exp, and ``_loss``'s numpy
code (``numpy_residual_and_loss``, ``numpy_hessp_residual``: the same steps
written as separate numpy passes) for the loss, the residual and the
Hessian product's residual; ``scipy.special.logsumexp`` for the loss of rows
far from any numpy code path's reach. The gradient and Hessian-vector
product that the loops feed are checked against finite differences and
scikit-learn in ``test_loss.py``, which runs them through the compiled path
wherever it is built.
"""

import numpy as np
import pytest
from scipy.special import logsumexp, softmax

from skmultilogit import _loss
from skmultilogit._backends import _compiled

_kernel = pytest.importorskip(
    "skmultilogit._kernel", reason="the compiled extension is not built (pip install -e .)"
)

SMALLEST_NORMAL = np.finfo(np.float64).tiny
SMALLEST_SUBNORMAL = np.finfo(np.float64).smallest_subnormal


def test_the_loss_module_uses_the_compiled_loops():
    assert _loss._kernel is _kernel


def test_exp_is_within_one_ulp_of_numpy_on_the_shifted_logits():
    # the loops' exp takes a logit minus its row's maximum: x <= 0
    x = np.concatenate(
        [
            -np.logspace(-300, np.log10(750.0), 20001),
            np.linspace(-746.0, -700.0, 10001),  # the smallest normal results and below
            np.linspace(-20.0, 0.0, 10001),
            [0.0, -0.0, -708.3964185322641, -708.39641853226, -1e300],
        ]
    )
    ours = np.empty_like(x)
    _kernel.exp(x, ours)
    expected = np.exp(x)
    normal = expected >= SMALLEST_NORMAL
    assert normal.sum() > 30000
    ulps = np.abs(ours[normal] - expected[normal]) / np.spacing(expected[normal])
    assert ulps.max() <= 1.0
    # below the normal doubles, 0: nothing next to a row's sum of exps (>= 1)
    assert (~normal).sum() > 1000
    np.testing.assert_array_equal(ours[~normal], 0.0)


def test_exp_keeps_nan_and_takes_minus_infinity_to_zero():
    x = np.array([np.nan, -np.inf])
    ours = np.empty_like(x)
    _kernel.exp(x, ours)
    assert np.isnan(ours[0])
    assert ours[1] == 0.0


def test_float32_exp_is_within_an_ulp_and_a_quarter_of_the_true_exp():
    # the float32 loops' exp, against float64's exp (exact to far below a
    # float's ulp): over every float in [-110, 0], 0.94 ulp at most where
    # the polynomial is contracted to FMA (the AVX-512 clone), 1.21 without
    # (the AVX2 and baseline clones); numpy's own float32 exp is up to 2.3
    # ulp off on these arguments
    x = np.concatenate(
        [
            -np.logspace(-40, np.log10(110.0), 200_001),
            np.linspace(-88.0, -86.0, 20_001),  # the smallest normal results and below
            np.linspace(-20.0, 0.0, 200_001),
            [0.0, -0.0, -87.33654, -87.33655, -1e30],
        ]
    ).astype(np.float32)
    ours = np.empty_like(x)
    _kernel.expf(x, ours)
    exact = np.exp(x.astype(np.float64))
    normal = exact >= np.finfo(np.float32).tiny
    assert normal.sum() > 400_000
    ulps = np.abs(ours[normal] - exact[normal]) / np.spacing(exact[normal].astype(np.float32))
    assert ulps.max() <= 1.25
    # below the normal floats, 0 (nothing next to a row's sum of exps, >= 1),
    # but for the arguments rounding puts on the threshold: within an ulp there
    below = ours[~normal]
    assert (~normal).sum() > 5_000 and np.count_nonzero(below) <= 2
    near = np.abs(below - exact[~normal]) <= np.finfo(np.float32).smallest_subnormal
    assert np.all((below == 0.0) | near)
    special = np.array([np.nan, -np.inf], dtype=np.float32)
    _kernel.expf(special, special)
    assert np.isnan(special[0]) and special[1] == 0.0


def test_log_is_within_one_ulp_of_numpy():
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [
            np.exp(rng.uniform(np.log(SMALLEST_NORMAL), np.log(np.finfo(np.float64).max), 100_000)),
            rng.uniform(1.0, 60.0, 100_000),  # a row's sum of exps: 1 <= S <= K
            np.linspace(0.5, 2.0, 10_001),  # around the reduction's sqrt(2) and 1
            [1.0, np.nextafter(1.0, 2.0), np.nextafter(1.0, 0.0), np.sqrt(0.5), np.sqrt(2.0)],
        ]
    )
    ours = np.empty_like(x)
    _kernel.log(x, ours)
    # the reference in extended precision where the platform has it (x86-64:
    # 64-bit mantissas): numpy's own float64 log is itself up to ~2 ulp off in
    # some versions (1.24), ours is within 0.76 ulp of the true log
    expected = np.log(x.astype(np.longdouble))
    exact_zero = expected == 0.0
    np.testing.assert_array_equal(ours[exact_zero], 0.0)
    error = np.abs(ours.astype(np.longdouble) - expected)[~exact_zero]
    ulps = error / np.spacing(np.abs(expected[~exact_zero]).astype(np.float64))
    assert ulps.max() <= 1.0


def test_log_of_the_special_values():
    x = np.array([np.inf, np.nan, 0.0, -1.0])
    ours = np.empty_like(x)
    _kernel.log(x, ours)
    assert ours[0] == np.inf
    assert np.isnan(ours[1])
    assert ours[2] == -np.inf
    assert np.isnan(ours[3])


def block(n_classes, n_rows, dtype, seed=0, scale=4.0):
    """Class-major logits with confident rows, far-apart logits and ties; labels; weights."""
    rng = np.random.default_rng(seed)
    raw = rng.normal(scale=scale, size=(n_classes, n_rows))
    raw[:, ::7] *= 100.0  # margins in the hundreds: exps that underflow
    raw[:, 1::11] = raw[0, 1::11]  # all classes tied
    y = rng.integers(0, n_classes, size=n_rows).astype(np.intp)
    weight = rng.uniform(0.0, 3.0, size=n_rows)
    weight[::5] = 0.0
    return raw.astype(dtype), y, weight


# rows around the loops' chunk of 256, so that a partial last chunk is covered
@pytest.mark.parametrize("n_rows", [1, 7, 255, 256, 257, 1000])
@pytest.mark.parametrize("n_classes", [2, 3, 10, 50])
def test_residual_and_loss_match_numpy_float64(n_classes, n_rows):
    raw, y, weight = block(n_classes, n_rows, np.float64)
    expected = raw.copy()
    expected_loss = _loss.numpy_residual_and_loss(expected, y, weight, np.arange(n_rows))
    compiled = raw.copy()
    loss = _kernel.residual_and_loss(compiled, y, weight)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-12)
    np.testing.assert_allclose(compiled, expected, rtol=1e-12, atol=1e-300)
    # and the loss is the written-out one, log-sum-exp minus the true logit
    rows = np.arange(n_rows)
    written_out = weight @ (logsumexp(raw, axis=0) - raw[y, rows])
    np.testing.assert_allclose(loss, written_out, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_classes", [2, 10, 50])
def test_the_probabilities_written_on_the_way_are_the_softmax(n_classes, dtype):
    # into a slice of a wider array, as a backend's row block of its cache
    raw, y, weight = block(n_classes, 1000, dtype)
    # the row maximum is subtracted in the logits' dtype, the rest as float64
    expected = softmax((raw - raw.max(axis=0)).astype(np.float64), axis=0)
    compiled = np.full((n_classes, 1200), -1.0, dtype=dtype)
    residual = raw.copy()
    loss = _kernel.residual_and_loss(residual, y, weight, compiled[:, 100:1100])
    via_numpy = np.empty((n_classes, 1000), dtype=dtype)
    numpy_residual = raw.copy()
    numpy_loss = _loss.numpy_residual_and_loss(
        numpy_residual, y, weight, np.arange(1000), via_numpy
    )
    # float32: the exps are float32's, and those below its normal range lose digits
    rtol, atol = (1e-15, 1e-300) if dtype == np.float64 else (1e-6, 1e-37)
    for proba in (compiled[:, 100:1100], via_numpy):
        assert proba.dtype == dtype
        np.testing.assert_allclose(proba, expected, rtol=rtol, atol=atol)
    assert np.all(compiled[:, :100] == -1.0) and np.all(compiled[:, 1100:] == -1.0)
    # and the residual and loss are those of a pass without them
    plain = raw.copy()
    assert _kernel.residual_and_loss(plain, y, weight) == loss
    np.testing.assert_array_equal(residual, plain)
    np.testing.assert_allclose(numpy_loss, loss, rtol=1e-9)


def test_probabilities_of_another_shape_or_inside_the_logits_are_refused():
    raw, y, weight = block(3, 10, np.float64)
    with pytest.raises(ValueError, match="shape of the logits"):
        _kernel.residual_and_loss(raw, y, weight, np.empty((3, 9)))
    # the loops read the logits back after writing the probabilities
    buffer = np.zeros(60)
    logits = buffer[:30].reshape(3, 10)
    for inside in (logits, logits[::-1], buffer[25:55].reshape(3, 10)):
        logits[...] = raw
        with pytest.raises(ValueError, match="overlap"):
            _kernel.residual_and_loss(logits, y, weight, inside)
    # rows in reverse order elsewhere are fine
    reversed_rows = np.zeros((3, 10))[::-1]
    _kernel.residual_and_loss(raw.copy(), y, weight, reversed_rows)
    np.testing.assert_allclose(reversed_rows, softmax(raw, axis=0), rtol=1e-15)


def test_the_loss_module_refuses_probabilities_of_another_dtype():
    # an integer array would take the probabilities truncated, without a word
    raw, y, weight = block(3, 10, np.float64)
    with pytest.raises(ValueError, match="dtype and shape"):
        _loss.residual_and_loss(raw, y, weight, np.arange(10), proba=np.zeros((3, 10), int))


@pytest.mark.parametrize("n_classes", [2, 10, 50])
def test_residual_and_loss_match_numpy_float32(n_classes):
    raw, y, weight = block(n_classes, 1000, np.float32)
    expected = raw.copy()
    expected_loss = _loss.numpy_residual_and_loss(expected, y, weight, np.arange(1000))
    compiled = raw.copy()
    loss = _kernel.residual_and_loss(compiled, y, weight)
    assert compiled.dtype == np.float32
    # the loss is float64 from float32 exps: the two exps differ in the last bit
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-9)
    np.testing.assert_allclose(compiled, expected, rtol=1e-6, atol=1e-6 * weight.max())


def test_the_residual_of_a_confident_row_keeps_its_size():
    # p_y = 1 - 1e-20: w (p_y - 1) is -1e-20, which w * p_y - w would round to 0
    raw = np.array([[46.0517], [0.0]])
    residual = raw.copy()
    _kernel.residual_and_loss(residual, np.array([0], dtype=np.intp), np.array([1.0]))
    np.testing.assert_allclose(residual[:, 0], [-np.exp(-46.0517), np.exp(-46.0517)], rtol=1e-12)


def test_nan_logits_give_a_nan_loss():
    raw, y, weight = block(3, 10, np.float64)
    weight[:] = 1.0
    raw[1, 4] = np.nan
    assert np.isnan(_kernel.residual_and_loss(raw, y, weight))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_true_class_at_minus_infinity_gives_an_infinite_loss_as_numpy(dtype):
    # -log P[i, y_i] is +inf there; the compensated sum once turned it to NaN
    # (its rounding-error term computed inf - inf)
    raw = np.array([[-np.inf, 0, 0], [0, 1, 0], [0, 0, 2], [1, 1, 1]], dtype=dtype)
    y = np.array([0, 1, 2], dtype=np.intp)
    weight = np.array([1.0, 2.0, 0.5])
    expected_loss = _loss.numpy_residual_and_loss(raw.copy(), y, weight, np.arange(3))
    assert expected_loss == np.inf
    assert _kernel.residual_and_loss(raw.copy(), y, weight) == np.inf


def test_labels_outside_the_classes_are_refused():
    raw, y, weight = block(3, 10, np.float64)
    y[2] = 3
    with pytest.raises(ValueError, match="class indices"):
        _kernel.residual_and_loss(raw, y, weight)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
@pytest.mark.parametrize("n_classes", [2, 10, 50])
def test_hessp_residual_matches_numpy_on_a_slice_of_the_probabilities(n_classes, dtype, rtol):
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=3.0, size=(n_classes, 3000))
    proba = np.exp(logits - logsumexp(logits, axis=0)).astype(dtype)
    rows = slice(1000, 2000)  # as a backend's row block: rows contiguous, classes strided
    direction = rng.normal(size=(n_classes, 1000)).astype(dtype)
    weight = rng.uniform(0.0, 2.0, size=1000)
    expected = _loss.numpy_hessp_residual(direction.copy(), proba[:, rows], weight)
    compiled = direction.copy()
    _kernel.hessp_residual(compiled, proba[:, rows], weight)
    np.testing.assert_allclose(compiled, expected, rtol=rtol, atol=rtol * np.abs(expected).max())
    # and it is the Hessian's product written out row by row
    for i in (0, 17, 999):
        p = proba[:, rows][:, i].astype(np.float64)
        jacobian = weight[i] * (np.diag(p) - np.outer(p, p))
        np.testing.assert_allclose(
            compiled[:, i], jacobian @ direction[:, i], rtol=100 * rtol, atol=100 * rtol
        )


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
@pytest.mark.parametrize("n_rows", [7, 257, 1000])
@pytest.mark.parametrize("n_classes", [2, 10, 50])
def test_the_intercept_and_its_gradient_on_the_way(n_classes, n_rows, dtype, rtol):
    # The loops add the intercept to X W^T and sum the residual per class
    # (the intercept's gradient) on the way: against the numpy steps, and
    # against the written-out softmax residual summed in float64.
    product, y, weight = block(n_classes, n_rows, dtype)
    intercept = np.random.default_rng(2).normal(scale=5.0, size=n_classes)
    logits = product + intercept.astype(dtype)[:, None]
    compiled, compiled_sums = product.copy(), np.full(n_classes, 0.5)
    loss = _kernel.residual_and_loss(compiled, y, weight, None, intercept, compiled_sums)
    expected, expected_sums = product.copy(), np.full(n_classes, 0.5)
    expected_loss = _loss.numpy_residual_and_loss(
        expected, y, weight, np.arange(n_rows), None, intercept, expected_sums
    )
    np.testing.assert_allclose(loss, expected_loss, rtol=rtol)
    np.testing.assert_allclose(compiled, expected, rtol=rtol, atol=rtol * np.abs(expected).max())
    np.testing.assert_allclose(compiled_sums, expected_sums, rtol=rtol, atol=rtol)
    wide = logits.astype(np.float64)
    residual = (softmax(wide, axis=0) - np.eye(n_classes)[y].T) * weight
    np.testing.assert_allclose(compiled_sums - 0.5, residual.sum(axis=1), rtol=rtol, atol=rtol)
    # the Hessian product's residual the same way, with the direction's intercept
    proba = softmax(wide, axis=0).astype(dtype)
    direction = np.random.default_rng(3).normal(size=(n_classes, n_rows)).astype(dtype)
    dir_intercept = np.random.default_rng(4).normal(size=n_classes)
    compiled, compiled_sums = direction.copy(), np.zeros(n_classes)
    _kernel.hessp_residual(compiled, proba, weight, dir_intercept, compiled_sums)
    expected, expected_sums = direction.copy(), np.zeros(n_classes)
    _loss.numpy_hessp_residual(expected, proba, weight, _loss.FRESH, dir_intercept, expected_sums)
    np.testing.assert_allclose(compiled, expected, rtol=rtol, atol=rtol * np.abs(expected).max())
    np.testing.assert_allclose(compiled_sums, expected_sums, rtol=rtol, atol=rtol)
    shifted = (direction + dir_intercept.astype(dtype)[:, None]).astype(np.float64)
    p = proba.astype(np.float64)
    written_out = weight * (p * shifted - p * (p * shifted).sum(axis=0))
    scale = np.abs(written_out).sum()
    np.testing.assert_allclose(compiled_sums, written_out.sum(axis=1), atol=10 * rtol * scale)


def test_an_intercept_or_sums_of_another_length_or_inside_the_logits_are_refused():
    raw, y, weight = block(3, 10, np.float64)
    with pytest.raises(ValueError, match="one value per class"):
        _kernel.residual_and_loss(raw.copy(), y, weight, None, np.zeros(2))
    with pytest.raises(ValueError, match="one value per class"):
        _kernel.residual_and_loss(raw.copy(), y, weight, None, None, np.zeros(4))
    with pytest.raises(ValueError, match="one value per class"):
        _kernel.hessp_residual(raw.copy(), softmax(raw, axis=0), weight, np.zeros(4))
    # nor inside the logits, which the loops write while they read these
    inside = raw.copy()
    with pytest.raises(ValueError, match="residual_sums must not overlap"):
        _kernel.residual_and_loss(inside, y, weight, None, None, inside[1, 2:5])
    with pytest.raises(ValueError, match="intercept must not overlap"):
        _kernel.residual_and_loss(inside, y, weight, None, inside[2, :3])
    with pytest.raises(ValueError, match="dir_intercept must not overlap"):
        _kernel.hessp_residual(inside, softmax(raw, axis=0), weight, inside[0, 7:10])


def test_probabilities_whose_rows_are_not_whole_entries_apart_take_the_numpy_path():
    # a field of a packed record array: a valid (K, m) float64 array whose
    # rows lie 8 m + 4 bytes apart, forwards and reversed
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(4, 300))
    records = np.zeros(4, dtype=[("proba", "f8", (300,)), ("pad", "i4")])
    records["proba"] = np.exp(logits - logsumexp(logits, axis=0))
    direction, weight = rng.normal(size=(4, 300)), rng.uniform(0.5, 2.0, size=300)
    for proba in (records["proba"], records["proba"][::-1]):
        expected = _loss.numpy_hessp_residual(direction.copy(), np.array(proba), weight)
        ours = _loss.hessp_residual(direction.copy(), proba, weight)
        np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-15)
        with pytest.raises(ValueError, match="whole entries apart"):
            _kernel.hessp_residual(direction.copy(), proba, weight)


def test_the_backend_pass_is_the_same_through_either_path(monkeypatch):
    from skmultilogit._backends import NumpyBackend

    rng = np.random.default_rng(2)
    X = rng.normal(size=(5000, 20))
    y = rng.integers(0, 7, size=5000)
    data = NumpyBackend(X, y, 7, rng.uniform(0.5, 2.0, size=5000))
    coef, intercept = rng.normal(size=(7, 20)), rng.normal(size=7)
    direction, dir_intercept = rng.normal(size=(7, 20)), rng.normal(size=7)
    compiled = (
        data.loss_gradient(coef, intercept),
        data.hessp(coef, intercept, direction, dir_intercept),
    )
    monkeypatch.setattr(_loss, "_kernel", None)
    data._proba_cache = None
    reference = (
        data.loss_gradient(coef, intercept),
        data.hessp(coef, intercept, direction, dir_intercept),
    )
    for ours, theirs in zip(compiled[0] + compiled[1], reference[0] + reference[1], strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def sparse_problem(n_classes, dtype, index_dtype, seed=4):
    """CSR X with empty rows and rows of odd and even lengths, labels, weights, two points."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    X = sp.random(
        400, 60, density=0.08, format="csr", random_state=seed, data_rvs=rng.standard_normal
    )
    row_scale = rng.uniform(0.5, 2.0, size=(400, 1))
    row_scale[5:9] = 0.0  # empty rows
    X = sp.csr_matrix(X.multiply(row_scale))
    X.eliminate_zeros()
    X = X.astype(dtype)
    X.indices = X.indices.astype(index_dtype)
    X.indptr = X.indptr.astype(index_dtype)
    y = rng.integers(0, n_classes, size=400).astype(np.intp)
    weight = rng.uniform(0.0, 2.0, size=400)
    weight[::9] = 0.0
    point = rng.normal(size=(n_classes, 60)), rng.normal(size=n_classes)
    direction = rng.normal(size=(n_classes, 60)), rng.normal(size=n_classes)
    return X, y, weight, point, direction


def dense_loss_gradient(X, y, weight, coef, intercept):
    """The data term and its gradient written out on dense X (scipy's logsumexp)."""
    raw = X @ coef.T + (0.0 if intercept is None else intercept)
    rows = np.arange(len(y))
    loss = weight @ (logsumexp(raw, axis=1) - raw[rows, y])
    residual = np.exp(raw - logsumexp(raw, axis=1, keepdims=True))
    residual[rows, y] -= 1.0
    residual *= weight[:, None]
    return loss, residual.T @ X, residual.sum(axis=0)


def tables(coef, padded):
    """W transposed for the CSR loops: plain (n_features, K), or padded and aligned."""
    from skmultilogit._backends._compiled import class_table

    if padded:
        return class_table(coef.shape[1], coef.shape[0], coef.T), class_table(*coef.shape[::-1])
    return np.ascontiguousarray(coef.T), np.zeros(coef.shape[::-1])


@pytest.fixture(params=["baseline", "avx2", "avx512f"])
def instruction_set(request):
    """Each variant of the loops written per instruction set that this CPU runs, restored after."""
    if request.param not in _kernel.instruction_sets():
        pytest.skip(f"this CPU does not run the {request.param} loops")
    previous = _kernel.use_instruction_set(request.param)
    yield request.param
    _kernel.use_instruction_set(previous)


# K around the loops' blocks of eight classes
@pytest.mark.parametrize("n_classes", [2, 3, 8, 9, 17])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("with_intercept", [True, False])
@pytest.mark.parametrize("padded", [True, False])
def test_csr_loss_gradient_is_the_written_out_one(
    instruction_set, n_classes, index_dtype, with_intercept, padded
):
    X, y, weight, (coef, intercept), _ = sparse_problem(n_classes, np.float64, index_dtype)
    intercept = intercept if with_intercept else None
    coef_t, grad_t = tables(coef, padded)
    grad_intercept = np.zeros(n_classes)
    loss = _kernel.csr_loss_gradient(
        X.data, X.indices, X.indptr, n_classes, coef_t, intercept, y, weight,
        grad_t, grad_intercept,
    )  # fmt: skip
    expected = dense_loss_gradient(X.toarray(), y, weight, coef, intercept)
    np.testing.assert_allclose(loss, expected[0], rtol=1e-12)
    np.testing.assert_allclose(grad_t[:, :n_classes].T, expected[1], rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(grad_intercept, expected[2], rtol=1e-11, atol=1e-12)
    np.testing.assert_array_equal(grad_t[:, n_classes:], 0.0)  # the padding stays zero


@pytest.mark.parametrize("n_classes", [2, 9, 17])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("padded", [True, False])
def test_csr_hessp_is_the_written_out_one(instruction_set, n_classes, index_dtype, padded):
    X, y, weight, (coef, intercept), (dir_coef, dir_intercept) = sparse_problem(
        n_classes, np.float64, index_dtype
    )
    dense = X.toarray()
    raw = dense @ coef.T + intercept
    proba = np.exp(raw - logsumexp(raw, axis=1, keepdims=True))
    dir_t, out_t = tables(dir_coef, padded)
    out_intercept = np.zeros(n_classes)
    _kernel.csr_hessp(
        X.data, X.indices, X.indptr, n_classes, dir_t, dir_intercept,
        np.ascontiguousarray(proba.T), weight, out_t, out_intercept,
    )  # fmt: skip
    out_t = out_t[:, :n_classes]
    # row by row, the softmax Jacobian times the direction's logits
    direction_logits = dense @ dir_coef.T + dir_intercept
    residual = np.stack(
        [
            weight[i] * (np.diag(p) - np.outer(p, p)) @ direction_logits[i]
            for i, p in enumerate(proba)
        ]
    )
    np.testing.assert_allclose(out_t.T, residual.T @ dense, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(out_intercept, residual.sum(axis=0), rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_csr_backend_pass_matches_the_dense_one(instruction_set, dtype):
    from skmultilogit._backends import NumpyBackend

    X, y, weight, (coef, intercept), (dir_coef, dir_intercept) = sparse_problem(10, dtype, np.int32)
    sparse = NumpyBackend(X, y, 10, weight)
    assert _compiled.csr_kernel(sparse) is _kernel
    dense = NumpyBackend(X.toarray(), y, 10, weight)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    for ours, theirs in zip(
        sparse.loss_gradient(coef, intercept)
        + sparse.hessp(coef, intercept, dir_coef, dir_intercept),
        dense.loss_gradient(coef, intercept)
        + dense.hessp(coef, intercept, dir_coef, dir_intercept),
        strict=True,
    ):
        np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=rtol * np.abs(theirs).max())


# K around the tiles of eight and four classes, features around the groups of
# three, six and twelve, rows around the chunks of 64
@pytest.mark.parametrize(
    "m, n_features, n_classes",
    [(1, 1, 2), (7, 5, 3), (63, 6, 4), (64, 7, 5), (65, 13, 8), (130, 12, 9), (200, 25, 12),
     (129, 3, 13), (70, 64, 17), (40, 2, 50)],
)  # fmt: skip
@pytest.mark.parametrize("with_intercept", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dense_hessp_is_the_written_out_one(
    instruction_set, m, n_features, n_classes, with_intercept, dtype
):
    from skmultilogit._backends._compiled import class_table

    rng = np.random.default_rng(m + n_features + n_classes)
    X = rng.normal(size=(m, n_features)) * rng.choice([1.0, 1e3], size=n_features)
    X = X.astype(dtype)
    # probabilities from a wider array: rows of another stride than m
    wide = np.ascontiguousarray(softmax(rng.normal(size=(m + 3, n_classes)) * 4, axis=1).T, dtype)
    proba = wide[:, 2 : m + 2]
    weight = rng.uniform(0.0, 2.0, size=m)
    dir_coef = rng.normal(size=(n_classes, n_features))
    dir_intercept = rng.normal(size=n_classes) if with_intercept else None
    dir_t = class_table(n_features, n_classes, dir_coef.T, whole_vectors=True, dtype=dtype)
    out_t = class_table(n_features, n_classes, whole_vectors=True)
    out_t[:, :n_classes] = 1.0  # added to
    out_intercept = np.full(n_classes, 2.0)
    _kernel.dense_hessp(X, n_classes, dir_t, dir_intercept, proba, weight, out_t, out_intercept)
    # row by row, the softmax Jacobian times the direction's logits, in
    # float64 from the (rounded) values the loop reads
    X, proba = X.astype(np.float64), proba.astype(np.float64)
    dir_coef = dir_t[:, :n_classes].T.astype(np.float64)
    c = 0.0 if dir_intercept is None else dir_intercept.astype(dtype).astype(np.float64)
    direction_logits = X @ dir_coef.T + c
    residual = np.stack(
        [
            weight[i] * (np.diag(p) - np.outer(p, p)) @ direction_logits[i]
            for i, p in enumerate(proba.T)
        ]
    )
    expected = residual.T @ X
    if dtype == np.float64:
        scale = np.abs(residual).T @ np.abs(X)
        np.testing.assert_array_less(
            np.abs(out_t[:, :n_classes].T - 1.0 - expected), 1e-13 * scale + 1e-300
        )
        np.testing.assert_allclose(
            out_intercept - 2.0, residual.sum(axis=0), rtol=1e-12, atol=1e-13
        )
    else:
        # float products: each logit off by up to (d + 1) eps |x| . |v| (+ |c|),
        # each residual by its row's share of that, the output's sums over a
        # chunk's 64 rows by (64 + K) eps of their size
        eps = float(np.finfo(np.float32).eps)
        logits_size = np.abs(X) @ np.abs(dir_coef).T + np.abs(c)
        rows_proba = proba.T
        shared = (rows_proba * logits_size).sum(axis=1, keepdims=True)
        residual_error = (
            (n_features + n_classes + 4)
            * eps
            * weight[:, None]
            * rows_proba
            * (logits_size + shared)
        )
        residual_size = np.abs(residual) + residual_error
        bound = 2 * (np.abs(X).T @ residual_size).T * (64 + n_classes) * eps
        bound += 2 * (residual_error.T @ np.abs(X))
        np.testing.assert_array_less(np.abs(out_t[:, :n_classes].T - 1.0 - expected), bound + 1e-30)
        np.testing.assert_array_less(
            np.abs(out_intercept - 2.0 - residual.sum(axis=0)),
            2 * residual_size.sum(axis=0) * 8 * eps + 1e-30,
        )
    np.testing.assert_array_equal(out_t[:, n_classes:], 0.0)  # the padding stays zero


@pytest.mark.parametrize(
    "m, n_features, n_classes",
    [
        (1, 1, 2),
        (7, 5, 3),
        (64, 7, 5),
        (65, 13, 8),
        (130, 12, 9),
        (129, 3, 13),
        # from 16 classes on the element-wise work runs along the rows
        (5, 6, 16),
        (70, 64, 17),
        (3, 4, 32),
        (129, 9, 33),
        (70, 40, 50),
    ],
)
@pytest.mark.parametrize("with_intercept", [True, False])
@pytest.mark.parametrize("keep_proba", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dense_loss_gradient_is_the_written_out_one(
    instruction_set, m, n_features, n_classes, with_intercept, keep_proba, dtype
):
    from skmultilogit._backends._compiled import class_table

    rng = np.random.default_rng(m + n_features + n_classes)
    X = rng.normal(size=(m, n_features)) * rng.choice([1.0, 30.0], size=n_features)
    X = X.astype(dtype)
    y = rng.integers(0, n_classes, size=m).astype(np.intp)
    weight = rng.uniform(0.0, 2.0, size=m)
    coef = rng.normal(size=(n_classes, n_features))
    intercept = rng.normal(size=n_classes) if with_intercept else None
    coef_t = class_table(n_features, n_classes, coef.T, whole_vectors=True, dtype=dtype)
    grad_t = class_table(n_features, n_classes, whole_vectors=True)
    grad_t[:, :n_classes] = 1.0  # added to
    grad_intercept = np.full(n_classes, 2.0)
    wide = np.full((n_classes, m + 3), np.nan, dtype=dtype)
    proba = wide[:, 2 : m + 2] if keep_proba else None
    loss = _kernel.dense_loss_gradient(
        X, n_classes, coef_t, intercept, y, weight, proba, grad_t, grad_intercept
    )
    # written out in float64 from the (rounded) values the loop reads
    X, coef = X.astype(np.float64), coef_t[:, :n_classes].T.astype(np.float64)
    if intercept is not None:
        intercept = intercept.astype(dtype).astype(np.float64)
    expected = dense_loss_gradient(X, y, weight, coef, intercept)
    raw = X @ coef.T + (0.0 if intercept is None else intercept)
    if dtype == np.float64:
        np.testing.assert_allclose(loss, expected[0], rtol=1e-12)
        np.testing.assert_allclose(
            grad_t[:, :n_classes].T - 1.0, expected[1], rtol=1e-11, atol=1e-11
        )
        np.testing.assert_allclose(grad_intercept - 2.0, expected[2], rtol=1e-11, atol=1e-12)
    else:
        # float products: each logit off by up to (d + 2) eps |x| . |w| + eps |b|,
        # a row's loss by twice its largest, its residuals by their
        # probability's share of that and the float softmax's rounding; the
        # gradient's sums over a chunk's 64 rows by (64 + K) eps of their size
        eps = float(np.finfo(np.float32).eps)
        logits_size = np.abs(X) @ np.abs(coef).T + (0.0 if intercept is None else np.abs(intercept))
        logit_error = (n_features + 2) * eps * logits_size.max(axis=1)
        loss_bound = weight @ (4 * logit_error + 16 * eps * (1.0 + logits_size.max(axis=1)))
        assert abs(loss - expected[0]) <= loss_bound
        proba_rows = softmax(raw, axis=1)
        residual_error = weight[:, None] * (
            4 * proba_rows * logit_error[:, None] + (n_classes + 8) * eps
        )
        residual_size = weight[:, None] * (proba_rows + 1.0) + residual_error
        bound = 2 * (residual_error.T @ np.abs(X)) + 2 * (64 + n_classes) * eps * (
            residual_size.T @ np.abs(X)
        )
        np.testing.assert_array_less(
            np.abs(grad_t[:, :n_classes].T - 1.0 - expected[1]), bound + 1e-30
        )
        np.testing.assert_array_less(
            np.abs(grad_intercept - 2.0 - expected[2]),
            2 * residual_error.sum(axis=0) + 16 * eps * residual_size.sum(axis=0) + 1e-30,
        )
    np.testing.assert_array_equal(grad_t[:, n_classes:], 0.0)  # the padding stays zero
    if keep_proba:
        expected = softmax(raw, axis=1).T
        # exp's argument z - max(z) carries the logits' rounding, ~eps |z|
        eps = float(np.finfo(dtype).eps)
        tiny = 1e-290 if dtype == np.float64 else 1e-35
        normal = expected > tiny
        margin = 64 * eps * (1.0 + np.abs(raw).max())
        if dtype == np.float32:
            margin += 4 * (n_features + 2) * eps * np.abs(raw).max()
        proba = proba.astype(np.float64)
        np.testing.assert_allclose(np.log(proba[normal]), np.log(expected[normal]), atol=margin)
        assert np.all(proba[~normal] <= tiny)
        assert np.isnan(wide[:, :2]).all() and np.isnan(wide[:, m + 2 :]).all()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_dense_backend_passes_run_the_loops_and_match_the_numpy_steps(monkeypatch, dtype):
    from skmultilogit._backends import NumpyBackend
    from skmultilogit._backends._proba_cache import cached_proba

    rng = np.random.default_rng(3)
    X = rng.normal(size=(700, 30)).astype(dtype)
    y = rng.integers(0, 10, size=700)
    weight = rng.uniform(0.0, 2.0, size=700)
    point = rng.normal(size=(10, 30)), rng.normal(size=10)
    other = rng.normal(size=(10, 30)), rng.normal(size=10)
    direction = rng.normal(size=(10, 30)), rng.normal(size=10)
    results = []
    for compiled in (True, False):
        if not compiled:
            monkeypatch.setattr(_compiled, "dense_kernel", lambda data: None)
        data = NumpyBackend(X, y, 10, weight)
        assert (_compiled.dense_kernel(data) is _kernel) == compiled
        # a product keeps the probabilities; the loss pass at the next point
        # refills them on the way, and the products there read them
        product = data.hessp(*point, *direction)
        loss_gradient = data.loss_gradient(*other)
        refilled = cached_proba(data, *other).copy()
        results.append(product + loss_gradient + (refilled,) + data.hessp(*other, *direction))
    ours, numpy_steps = results
    # float32: both round their float products, in another order
    rtol = 1e-12 if dtype == np.float64 else 1e-4
    for mine, theirs in zip(ours, numpy_steps, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=rtol, atol=rtol * np.abs(theirs).max())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_features", [1, 30])
def test_products_bound_to_a_point_stay_at_it_through_passes_elsewhere(
    monkeypatch, dtype, n_features
):
    # hessp_at makes the compiled pass's tables once and looks the point's
    # probabilities up at every product: a loss pass at another point (a
    # line search's trial) refills the backend's cached probabilities in
    # place, and a product at the first point afterwards must not read them.
    # Each product is a new array (with one feature a transposed table's
    # slice is contiguous: a view of it would change with the next product).
    from skmultilogit._backends import NumpyBackend

    rng = np.random.default_rng(5)
    X = rng.normal(size=(700, n_features)).astype(dtype)
    y = rng.integers(0, 10, size=700)
    weight = rng.uniform(0.0, 2.0, size=700)
    point = rng.normal(size=(10, n_features)), rng.normal(size=10)
    other = rng.normal(size=(10, n_features)), rng.normal(size=10)
    directions = [(rng.normal(size=(10, n_features)), rng.normal(size=10)) for _ in range(3)]
    data = NumpyBackend(X, y, 10, weight)
    assert _compiled.dense_kernel(data) is _kernel
    product = data.hessp_at(*point)
    first = product(*directions[0])
    kept = tuple(part.copy() for part in first)
    data.loss_gradient(*other)
    second = product(*directions[1])
    data.hessp(*other, *directions[2])
    third = product(*directions[2])
    for part, copy in zip(first, kept, strict=True):
        np.testing.assert_array_equal(part, copy)
    # the reference: the numpy steps' products at the point, on a fresh backend
    monkeypatch.setattr(_compiled, "dense_kernel", lambda data: None)
    reference = NumpyBackend(X, y, 10, weight)
    rtol = 1e-12 if dtype == np.float64 else 1e-4
    for ours, direction in zip((first, second, third), directions, strict=True):
        for mine, theirs in zip(ours, reference.hessp(*point, *direction), strict=True):
            np.testing.assert_allclose(mine, theirs, rtol=rtol, atol=rtol * np.abs(theirs).max())


def _written_out_design_product(X, weight, proba, center, scale, inert, dir_coef, dir_intercept):
    """The data term's Hessian product in the design rows' coordinates, from its definition.

    Design rows ``z_i = [(x_i - center) / scale, 1]`` (inert columns zero, no
    1 without an intercept), ``u_i = V z_i`` and ``r_i = w_i (p_i * u_i -
    p_i (p_i . u_i))``; the product is ``sum_i r_i z_i^T``.
    """
    Z = (X.astype(np.float64) - center) / scale
    Z[:, inert] = 0.0
    direction = dir_coef
    if dir_intercept is not None:
        Z = np.column_stack([Z, np.ones(len(X))])
        direction = np.column_stack([dir_coef, dir_intercept])
    P = proba.T.astype(np.float64)
    U = Z @ direction.T
    R = weight[:, None] * (P * U - P * (P * U).sum(axis=1, keepdims=True))
    product = R.T @ Z
    if dir_intercept is None:
        return product, None
    return product[:, :-1], product[:, -1]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("with_inert", [True, False])
def test_products_in_the_design_coordinates_are_the_written_out_ones(
    monkeypatch, dtype, fit_intercept, with_inert
):
    # hessp_at(..., center, scale, inert): on one thread the compiled loops
    # change coordinates in their tables (_kernel.design_direction,
    # design_product); the numpy steps (_design) elsewhere. Both against the
    # product written out from its definition, and each other.
    from skmultilogit._backends import NumpyBackend

    rng = np.random.default_rng(11)
    n, d, K = 500, 13, 10
    X = rng.normal(loc=4.0, scale=3.0, size=(n, d)).astype(dtype)
    inert = np.zeros(d, dtype=bool)
    if with_inert:
        inert[[2, 7]] = True
        X[:, inert] = 5.0 if fit_intercept else 0.0
    y = rng.integers(0, K, size=n)
    weight = rng.uniform(0.0, 2.0, size=n)
    center = rng.normal(loc=4.0, size=d) if fit_intercept else np.zeros(d)
    center[inert] = 5.0 if fit_intercept else 0.0
    scale = rng.uniform(0.1, 10.0, size=d)
    point = rng.normal(size=(K, d)) * 0.1, rng.normal(size=K) if fit_intercept else None
    directions = [
        (rng.normal(size=(K, d)), rng.normal(size=K) if fit_intercept else None) for _ in range(2)
    ]
    data = NumpyBackend(X, y, K, weight)
    assert _compiled.dense_kernel(data) is _kernel and len(data._pass_groups()) == 1
    design = {"center": center, "scale": scale, "inert": inert if with_inert else None}
    compiled = data.hessp_at(*point, **design)
    ours = [compiled(*direction) for direction in directions]
    proba = data._cached_proba(*point)
    monkeypatch.setattr(_compiled, "dense_kernel", lambda data: None)
    numpy_steps = NumpyBackend(X, y, K, weight).hessp_at(*point, **design)
    rtol = 1e-12 if dtype == np.float64 else 1e-4
    for mine, direction in zip(ours, directions, strict=True):
        expected = _written_out_design_product(X, weight, proba, center, scale, inert, *direction)
        for part, theirs, numpy_part in zip(mine, expected, numpy_steps(*direction), strict=True):
            if theirs is None:
                continue  # (no intercept: the backend's intercept sums are not the product's)
            atol = rtol * np.abs(theirs).max()
            np.testing.assert_allclose(part, theirs, rtol=rtol, atol=atol)
            np.testing.assert_allclose(numpy_part, theirs, rtol=rtol, atol=atol)
        # an inert feature moves nothing and gets nothing, exactly
        assert not mine[0][:, inert].any()


def test_inert_features_get_zero_even_where_a_sum_is_infinite():
    # design_product sets an inert feature's entries (inverse scale 0), it
    # does not multiply them by 0: an infinite sum (a constant column near
    # the float maximum) would make 0 * inf = NaN
    out_t = np.zeros((3, 8))
    out_t[1, :2] = np.inf
    product = np.full((2, 3), np.nan)
    _kernel.design_product(out_t, np.ones(2), np.zeros(3), np.array([1.0, 0.0, 2.0]), product)
    np.testing.assert_array_equal(product, np.zeros((2, 3)))


def test_a_bound_design_product_takes_directions_of_any_float_dtype():
    # the solvers' directions are float64, but a float32 one is cast, not
    # refused by the compiled loop's float64 signature
    from skmultilogit._backends import NumpyBackend

    rng = np.random.default_rng(2)
    X = rng.normal(size=(50, 4))
    data = NumpyBackend(X, rng.integers(0, 3, size=50), 3, np.ones(50))
    product = data.hessp_at(
        rng.normal(size=(3, 4)), rng.normal(size=3), center=X.mean(axis=0), scale=X.std(axis=0)
    )
    direction = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=3)
    as_float64 = product(direction[0].astype(np.float64), direction[1])
    for part, expected in zip(product(*direction), as_float64, strict=True):
        np.testing.assert_array_equal(part, expected)


def test_the_design_coordinates_loops_refuse_arrays_of_other_shapes():
    table, out = _compiled.class_table(3, 2, whole_vectors=True), np.zeros((3, 8))
    direction, ones = np.ones((2, 3)), np.ones(3)
    with pytest.raises(ValueError, match="every feature"):
        _kernel.design_direction(direction, None, np.ones(2), ones, table, None, out, np.zeros(2))
    with pytest.raises(ValueError, match="stride"):
        _kernel.design_direction(direction, None, ones, ones, table[:2], None, out, np.zeros(2))
    with pytest.raises(ValueError, match="every class"):
        _kernel.design_direction(direction, np.ones(2), ones, ones, table, None, out, np.zeros(2))
    with pytest.raises(ValueError, match="every feature"):
        _kernel.design_product(out, np.zeros(2), ones, np.ones(4), np.empty((2, 3)))
    with pytest.raises(ValueError, match="stride"):
        _kernel.design_product(out, np.zeros(3), ones, ones, np.empty((2, 3)))


def test_dense_hessp_refuses_tables_of_other_shapes():
    X = np.ones((4, 3))
    proba = np.full((2, 4), 0.5)
    table = np.zeros((3, 8))
    with pytest.raises(ValueError, match="a multiple of 8"):
        _kernel.dense_hessp(
            X, 2, np.zeros((3, 2)), None, proba, np.ones(4), np.zeros((3, 2)), np.zeros(2)
        )
    with pytest.raises(ValueError, match="a multiple of 8"):
        _kernel.dense_hessp(
            X, 2, np.zeros((4, 8)), None, proba, np.ones(4), np.zeros((4, 8)), np.zeros(2)
        )
    with pytest.raises(ValueError, match="proba must be"):
        _kernel.dense_hessp(X, 2, table, None, proba[:, :3], np.ones(4), table.copy(), np.zeros(2))
    with pytest.raises(ValueError, match="weight needs"):
        _kernel.dense_hessp(X, 2, table, None, proba, np.ones(3), table.copy(), np.zeros(2))


def test_malformed_csr_arrays_are_refused_before_the_loops_read_them():
    X, y, weight, (coef, intercept), _ = sparse_problem(3, np.float64, np.int32)
    arguments = (
        3,
        np.ascontiguousarray(coef.T),
        intercept,
        y,
        weight,
        np.zeros((60, 3)),
        np.zeros(3),
    )
    indices = X.indices.copy()
    indices[10] = 60
    with pytest.raises(ValueError, match="indices must lie"):
        _kernel.csr_loss_gradient(X.data, indices, X.indptr, *arguments)
    indptr = X.indptr.copy()
    indptr[3], indptr[4] = indptr[4], indptr[3] - 1
    with pytest.raises(ValueError, match="indptr must not decrease"):
        _kernel.csr_loss_gradient(X.data, X.indices, indptr, *arguments)
    indptr = X.indptr.copy()
    indptr[-1] += 1
    with pytest.raises(ValueError, match="outside data"):
        _kernel.csr_loss_gradient(X.data, X.indices, indptr, *arguments)
    with pytest.raises(ValueError, match="one entry more than the rows"):
        _kernel.csr_loss_gradient(X.data, X.indices, X.indptr[:0], *arguments)
    with pytest.raises(TypeError):
        _kernel.csr_loss_gradient(X.data, X.indices, None, *arguments)
    with pytest.raises(TypeError):
        _kernel.residual_and_loss(None, y, weight)


def test_the_loss_of_many_rows_is_summed_to_rounding():
    # the solvers compare objectives to 16 ulp: a plain running sum over
    # 200 000 rows strays by hundreds of ulp; each row's term is compared
    # with the exact sum of the terms (math.fsum)
    import math

    import scipy.sparse as sp

    rng = np.random.default_rng(5)
    n_rows, n_classes = 200_000, 3
    raw = rng.normal(size=(n_classes, n_rows))
    y = rng.integers(0, n_classes, size=n_rows).astype(np.intp)
    weight = rng.uniform(0.5, 2.0, size=n_rows)
    terms = weight * (logsumexp(raw, axis=0) - raw[y, np.arange(n_rows)])
    exact = math.fsum(terms)
    dense = _kernel.residual_and_loss(raw.copy(), y, weight)
    # one column of ones per class: X = I, coef = the logits' transpose
    X = sp.csr_matrix((np.ones(n_rows), np.arange(n_rows), np.arange(n_rows + 1)))
    sparse = _kernel.csr_loss_gradient(
        X.data, X.indices, X.indptr, n_classes, np.ascontiguousarray(raw.T), None, y, weight,
        np.zeros((n_rows, n_classes)), np.zeros(n_classes),
    )  # fmt: skip
    for loss in (dense, sparse):
        # each term carries its own rounding (log, subtraction): a few ulp of
        # the largest term per row at worst, far less on average
        assert abs(loss - exact) <= 4 * np.spacing(exact)


def _written_out_sweep(u, residual, hessian, weights, curvature):
    """Coordinate descent on the model, one coordinate after another, as its formula reads."""
    u, residual = u.copy(), residual.copy()
    for j in range(weights.size):
        if curvature[j] > 0:
            # argmin_v r_j (v - u_j) + h_j (v - u_j)^2 / 2 + w_j |v|
            target = u[j] - residual[j] / curvature[j]
            threshold = weights[j] / curvature[j]
            new = np.sign(target) * max(abs(target) - threshold, 0.0)
        elif abs(residual[j]) <= weights[j]:
            new = 0.0
        else:
            continue
        residual = residual + hessian[:, j] * (new - u[j])
        u[j] = new
    return u, residual


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "numpy"])
def test_the_coordinate_sweep_is_the_written_out_one(compiled, monkeypatch):
    from skmultilogit._solvers._proximal import _coordinate_sweep

    if not compiled:
        monkeypatch.setattr(_loss, "_kernel", None)
    rng = np.random.default_rng(11)
    size, n_coef = 40, 36  # the last four: intercepts, left alone
    factor = rng.normal(size=(60, size))
    hessian = factor.T @ factor / 60
    hessian[5, :] = hessian[:, 5] = 0.0  # a coordinate without curvature
    curvature = np.diagonal(hessian)[:n_coef].copy()
    weights = rng.uniform(0.05, 0.5, size=n_coef)
    u = rng.normal(size=size) * (rng.random(size) < 0.6)
    residual = rng.normal(size=size)
    for r5 in (0.01, 3.0):  # within its weight (to zero) and beyond it (unchanged)
        residual[5] = r5
        expected_u, expected_r = _written_out_sweep(u, residual, hessian, weights, curvature)
        ours_u, ours_r = u.copy(), residual.copy()
        _coordinate_sweep(ours_u, ours_r, hessian, weights, curvature)
        np.testing.assert_allclose(ours_u, expected_u, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(ours_r, expected_r, rtol=1e-12, atol=1e-14)
        assert ours_u[5] == (0.0 if r5 < weights[5] else u[5])
        np.testing.assert_array_equal(ours_u[n_coef:], u[n_coef:])
    # and the sweep's zeros are exact: soft-thresholding, not a tiny value
    assert (ours_u[:n_coef] == 0).sum() > 0


def test_the_coordinate_sweep_refuses_arrays_of_other_shapes():
    hessian = np.eye(4)
    with pytest.raises(ValueError, match="residual and hessian must match u"):
        _kernel.coordinate_sweep(np.zeros(4), np.zeros(3), hessian, np.ones(4), np.ones(4))
    with pytest.raises(ValueError, match="curvature must match weights"):
        _kernel.coordinate_sweep(np.zeros(4), np.zeros(4), hessian, np.ones(4), np.ones(3))
    with pytest.raises(ValueError, match="at most u's length"):
        _kernel.coordinate_sweep(np.zeros(4), np.zeros(4), hessian, np.ones(5), np.ones(5))


def _pair_inputs(rng, m, size, n_classes, dtype):
    """Design rows (Fortran), probabilities (some rows confident) and weights (one -0.0)."""
    design = np.asfortranarray(rng.normal(size=(m, size)).astype(dtype))
    logits = rng.normal(size=(m, n_classes)) * rng.choice([1.0, 30.0], size=(m, 1))
    proba = softmax(logits, axis=1)
    weight = rng.uniform(0.2, 2.0, size=m)
    weight[0] = -0.0  # passes validation
    return design, proba, weight


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "m, size, n_classes",
    [(1, 1, 2), (7, 5, 3), (9, 17, 4), (300, 65, 10), (50, 16, 2), (33, 32, 5), (40, 130, 3)],
)
@pytest.mark.parametrize("allowed", [0.0, 1e-4, 0.05, np.inf])
def test_the_pair_sums_are_the_numpy_paths(
    monkeypatch, instruction_set, dtype, m, size, n_classes, allowed
):
    # The compiled loops choose the same terms (their sizes, in the
    # Hessian's dtype, are numpy's to the bit) and sum them as BLAS's syrk
    # does, to rounding; everything kept, the sums are the written-out
    # sum_i omega_i p_ik p_il x^_i x^_i^T (float64, einsum). Each variant
    # of the rank update (vectors of 16, 32 or 64 bytes, tiles of their own
    # shape) that the CPU runs.
    from skmultilogit import _hessian, _omission

    monkeypatch.setattr(_omission, "OMITTING_MAX_KEPT", 1.0)
    rng = np.random.default_rng(m + size + n_classes)
    design, proba, weight = _pair_inputs(rng, m, size, n_classes, dtype)
    pairs_by = {}
    kept_by = {}
    for compiled in (True, False):
        monkeypatch.setattr(_omission, "_kernel", _kernel if compiled else None)
        pairs = _hessian.class_pairs_buffer(n_classes, size, dtype)
        omit = np.inf if allowed == np.inf else allowed * float((design.astype(float) ** 2).sum())
        kept_by[compiled] = _omission.add_class_pairs_omitting(pairs, design, proba, weight, omit)
        pairs_by[compiled] = pairs
    assert kept_by[True] == kept_by[False]
    upper = np.triu_indices(size)
    ours, numpy_path = (pairs_by[c][upper[0], upper[1]] for c in (True, False))
    scale = max(float(np.abs(numpy_path).max()), np.finfo(dtype).tiny)
    rounding = 64 * np.finfo(dtype).eps * scale
    np.testing.assert_allclose(ours, numpy_path, rtol=0, atol=rounding)
    if allowed == 0.0:
        rows = design.astype(np.float64)
        written_out, bound = [], []
        for k in range(n_classes - 1):
            for other in range(k + 1, n_classes):
                factor = weight * proba[:, k] * proba[:, other]
                written_out.append(np.einsum("i,ia,ib->ab", factor, rows, rows))
                bound.append(np.einsum("i,ia,ib->ab", np.abs(factor), np.abs(rows), np.abs(rows)))
        written_out = np.stack(written_out, axis=-1)[upper[0], upper[1]]
        bound = np.stack(bound, axis=-1)[upper[0], upper[1]]
        # a sum of m products in the Hessian's dtype: at most ~ (m + 4) eps of |terms|
        error = np.abs(ours - written_out)
        assert np.all(error <= (m + 4) * np.finfo(dtype).eps * bound + 1e-300)
    if allowed == np.inf:
        assert kept_by[True] == 0 and not ours.any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_pair_size_bins_give_numpys_omission_threshold(dtype):
    # _omission.omission_threshold (numpy, tested by brute force in
    # test_loss.py) from the factors' array; the loops bin the same sizes
    # without forming it.
    from skmultilogit._omission import _size_bins, _threshold_from_bins, omission_threshold

    rng = np.random.default_rng(5)
    for _ in range(50):
        m, n_classes = rng.integers(1, 60), rng.integers(2, 9)
        root = np.exp(rng.uniform(-60, 1, size=(n_classes, m))) * (rng.random((n_classes, m)) > 0.1)
        root = root.astype(dtype)
        root[:, rng.random(m) < 0.05] = -0.0
        norms = rng.uniform(0.0, 50.0, size=m).astype(dtype)
        factors = np.concatenate([root[k] * root[k + 1 :] for k in range(n_classes - 1)], axis=0)
        omit = np.exp(rng.uniform(-120, 6))
        sums, counts = _size_bins(dtype)
        _kernel.pair_size_bins(np.ascontiguousarray(root), norms, sums, counts)
        assert _threshold_from_bins(sums, counts, omit) == omission_threshold(factors, norms, omit)


def test_the_pair_sums_refuse_arrays_of_other_shapes():
    design = np.zeros((5, 3), order="F")
    root = np.zeros((4, 5))
    norms = np.zeros(5)
    with pytest.raises(ValueError, match="one entry per row of design"):
        _kernel.add_pair_sums(design, root[:, :4].copy(), norms, 0.0, 0.0, np.zeros((6, 3, 3)))
    with pytest.raises(ValueError, match="pairs_t must be"):
        _kernel.add_pair_sums(design, root, norms, 0.0, 0.0, np.zeros((5, 3, 3)))
    with pytest.raises(ValueError, match="sums and counts need 2048 bins"):
        _kernel.pair_size_bins(root, norms, np.zeros(256), np.zeros(2048, dtype=np.intp))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_classes, n_features", [(2, 1), (3, 5), (10, 64), (7, 13)])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_the_compiled_assembly_is_the_numpy_one(
    monkeypatch, dtype, n_classes, n_features, fit_intercept
):
    # _hessian.class_pair_hessian from the same sums (random upper
    # triangles): the same upper triangle to the bit, nothing written below
    # it. That numpy assembly is checked against the textbook Hessian in
    # test_loss.py.
    from skmultilogit import _hessian

    size = n_features + fit_intercept
    rng = np.random.default_rng(n_classes * 100 + n_features)
    pairs = _hessian.class_pairs_buffer(n_classes, size, dtype)
    pairs[...] = rng.normal(size=pairs.shape)
    built = {}
    for compiled in (True, False):
        monkeypatch.setattr(_hessian, "_kernel", _kernel if compiled else None)
        built[compiled] = _hessian.class_pair_hessian(
            pairs.copy(order="F"), n_classes, n_features, fit_intercept
        )
    upper = np.triu_indices(n_classes * size)
    np.testing.assert_array_equal(built[True][upper], built[False][upper])
    assert not np.tril(built[True], -1).any()
    with pytest.raises(ValueError, match="size = n_features"):
        _kernel.pair_hessian(pairs.T, n_features + 1, fit_intercept, built[True])
