"""The probabilities an in-memory backend keeps at one point, for Newton's Hessian products.

A conjugate-gradient solve takes several Hessian products at one point,
each needing the probabilities ``P`` there. The backend keeps them in
``data._proba_cache`` as ``(coef, intercept, proba)``: ``proba`` in the
backend's layout (``NumpyBackend``: class-major (K, n) in X's dtype; the
array-API backend: (n, K) on its device), valid at the copies ``coef`` and
``intercept`` of the point. A product at another point recomputes them
(:func:`cached_proba`). Once the cache exists (a solver has asked for a
product), each of ``NumpyBackend``'s dense and numpy-path sparse loss
passes refills its array on the way (:func:`proba_to_refill`,
:func:`keep_proba`; the compiled CSR pass, which never forms the n x K
logits, does not): the Newton step after a line search then starts at a
point whose probabilities are already there, which saves one product
``X W^T`` and a softmax per step (~4 % of a fit on the 8x8 digits). Fits
that never ask for a product (lbfgs, unless its finishing steps do) keep no
n x K array.

Only float64 X: there the pass's probabilities (each rounded once from
float64) and a softmax of their own differ in the last bit at most. float32
X keeps one float32 softmax for its products, the same in every backend: a
float32 fit stops where float32's rounding lets it, and probabilities
rounded otherwise sent the numpy fit on the 8x8 digits one polish step
further than a device's without float64 (``_backends._array_api``; coef
1e-6 from the optimum against the device's 7e-5). (The compiled float32
passes sum their float products in their own order, so the numpy and the
device fits need not take the same steps; both stop within float32's reach
of the optimum.)
"""

import numpy as np


def cached_proba(data, coef, intercept):
    """``data._proba(coef, intercept)``, kept in ``data._proba_cache`` between calls at one point.

    For an in-memory backend: a sequence of Hessian products at one point
    (a conjugate-gradient inner solve) then costs two matrix products each.
    """
    cache = data._proba_cache
    if cache is None or not _at(cache, coef, intercept):
        # the old n x K probabilities go before the new ones are made: two
        # at once were 0.4 of a 1 000 000 x 50 float64 X at K = 10
        data._proba_cache = cache = None
        cache = _point(coef, intercept) + (data._proba(coef, intercept),)
        data._proba_cache = cache
    return cache[2]


def proba_lookup(data, coef, intercept):
    """:func:`cached_proba` at one point as a function of nothing: the lookup of its products.

    Each cache entry holds its own copies of its point, never changed and
    never shared with another entry; a lookup that finds the entry it
    checked last (its copy of ``coef``, held here: a small array, not the
    n x K probabilities) skips comparing the points again (two
    ``np.array_equal`` calls, 5 us of the digits' 170 us product).
    """
    checked = None

    def lookup():
        nonlocal checked
        cache = data._proba_cache
        if cache is not None and cache[0] is checked:
            return cache[2]
        proba = cached_proba(data, coef, intercept)
        checked = data._proba_cache[0]
        return proba

    return lookup


def proba_to_refill(data):
    """The cached probabilities' array for a pass to overwrite at a new point, else None.

    The cache is emptied first: a pass that fails leaves no array that is
    half of one point and half of another.
    """
    cache, data._proba_cache = data._proba_cache, None
    return None if cache is None else cache[2]


def keep_proba(data, coef, intercept, proba):
    """Keep ``proba``, filled by a pass at ``(coef, intercept)``, as the cache."""
    data._proba_cache = _point(coef, intercept) + (proba,)


def _at(cache, coef, intercept):
    """Whether ``cache`` belongs to the point ``(coef, intercept)`` (intercept None: none)."""
    if not np.array_equal(cache[0], coef):
        return False
    if cache[1] is None or intercept is None:
        return cache[1] is None and intercept is None
    return np.array_equal(cache[1], intercept)


def _point(coef, intercept):
    """Copies of the point ``(coef, intercept)`` that the cached probabilities belong to."""
    return np.array(coef, copy=True), None if intercept is None else np.array(intercept, copy=True)
