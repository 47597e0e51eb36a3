"""Directions and products in the coordinates of the design rows ``[(x - center) / scale, 1]``.

The solvers work in coordinates ``(V, c)`` in which the design rows are
centred and scaled (``_conditioning.ConditionedProblem``); a backend's
``hessp_at(..., center=, scale=, inert=)`` takes a direction in them and
gives the data term's Hessian product in them. The model's own direction
is

.. math::

    W = V / \\sigma, \\qquad b = c - W \\mu

(``sigma`` the scale, ``mu`` the centre, per feature), and a product
``(g_W, g_b)`` in the model's coordinates pulls back to

.. math::

    g_V = (g_W - g_b \\mu^T) / \\sigma, \\qquad g_c = g_b,

since ``W x + b = V (x - mu) / sigma + c`` row by row. An inert feature's
design column is exactly zero (a constant column, centred): its entries of
``W`` and of ``g_V`` are zero, not the rounding that computing them leaves.
Without an intercept the centre is zero (None: zero) and ``b`` is None.

These are the numpy steps; the compiled dense pass makes the same changes
in its own tables (``_compiled.dense_hessp_at``).
"""

import numpy as np


def model_direction(dir_coef, dir_intercept, center, scale, inert=None):
    """The model's direction ``(W, b)`` for ``(V, c)`` in design coordinates (see the module).

    ``scale`` None: the model's coordinates themselves, returned as they are.

    Examples
    --------
    >>> import numpy as np
    >>> W, b = model_direction(np.array([[2.0, 3.0]]), np.array([1.0]),
    ...                        np.array([1.0, 0.0]), np.array([2.0, 3.0]))
    >>> W, b
    (array([[1., 1.]]), array([0.]))
    """
    if scale is None:
        return dir_coef, dir_intercept
    coef = dir_coef / scale
    if inert is not None:
        coef[:, inert] = 0.0
    if dir_intercept is None or center is None:
        return coef, dir_intercept
    return coef, dir_intercept - coef @ center


def pulled_back(product_coef, product_intercept, center, scale, inert=None):
    """A product ``(g_W, g_b)`` in the model's coordinates, in design coordinates (see the module).

    Without an intercept the centre is zero: only the coefficients' part is
    scaled (``product_intercept`` is passed on as it is).

    Examples
    --------
    >>> import numpy as np
    >>> g_V, g_c = pulled_back(np.array([[3.0, 3.0]]), np.array([1.0]),
    ...                        np.array([1.0, 0.0]), np.array([2.0, 3.0]))
    >>> g_V, g_c
    (array([[1., 1.]]), array([1.]))
    """
    if scale is None:
        return product_coef, product_intercept
    if product_intercept is None or center is None:
        coef = product_coef / scale
    else:
        coef = (product_coef - np.multiply.outer(product_intercept, center)) / scale
    if inert is not None:
        coef[:, inert] = 0.0
    return coef, product_intercept


def in_design_coordinates(product, center, scale, inert=None):
    """A product ``product(dir_coef, dir_intercept)`` of the model's coordinates, in design ones.

    The direction goes through :func:`model_direction`, the product through
    :func:`pulled_back`; ``scale`` None: ``product`` itself. The numpy steps
    of a backend's ``hessp_at`` wherever the compiled pass does not change
    coordinates in its tables.

    Examples
    --------
    >>> import numpy as np
    >>> double = lambda coef, intercept: (2 * coef, 2 * intercept)
    >>> g_V, g_c = in_design_coordinates(double, np.array([1.0, 0.0]), np.array([2.0, 3.0]))(
    ...     np.array([[2.0, 3.0]]), np.array([1.0]))
    >>> g_V, g_c
    (array([[1.        , 0.66666667]]), array([0.]))
    """
    if scale is None:
        return product

    def design_product(dir_coef, dir_intercept):
        direction = model_direction(dir_coef, dir_intercept, center, scale, inert)
        return pulled_back(*product(*direction), center, scale, inert)

    return design_product
