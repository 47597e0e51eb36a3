r"""Statistical inference for a fitted multinomial logit: covariance, tests, effects, intervals.

Parametrisation
---------------
The estimator stores one row per class, ``theta_k = (b_k, W_k)`` (intercept
first here, when there is one), and the probabilities depend only on
differences of rows. Inference is reported, as in statsmodels' ``MNLogit``,
for the contrasts with a reference class ``r``:

.. math::

    \beta_m = \theta_m - \theta_r, \qquad m \ne r,

a ``(K - 1) x p`` array with ``p = d + 1`` columns (the intercept's first).
Flattened row by row, ``beta`` indexes the covariance matrix: entry
``m p + q`` is class ``m``'s ``q``-th term.

Hessian and scores
------------------
With weights ``s_i``, design rows ``x~_i = (1, x_i)``, probabilities ``p_i``
and one-hot labels ``y_i``, the negative log-likelihood
``L = -sum_i s_i log p_{i, y_i}`` has, in the ``K p`` row parameters,

.. math::

    \nabla_{\theta_k} L = -\sum_i s_i (y_{ik} - p_{ik}) \tilde x_i, \qquad
    H = \sum_i s_i \left(\operatorname{diag}(p_i) - p_i p_i^\top\right)
        \otimes \tilde x_i \tilde x_i^\top,

the closed-form softmax Jacobian, formed by
:meth:`~skmultilogit._loss.MultinomialLoss.hessian`. With ``C < inf`` the
estimate minimises ``L + ||W||^2 / (2 C)``, so the penalised Hessian
``H + I_W / C`` (identity on the coefficients) replaces ``H``.

``H`` is singular along shifts shared by all classes: every such shift for
``C = inf``, the intercepts' shift for ``C < inf``. Let ``U`` be an
orthonormal basis of those directions and ``A`` the contrast map
``theta -> beta``. As ``A U = 0`` and ``M = H + U U^T`` is invertible,

.. math::

    \operatorname{Cov}(\hat\beta) = A M^{-1} A^\top \quad \text{(nonrobust)},
    \qquad
    A M^{-1} J M^{-1} A^\top \quad \text{(sandwich)},

with ``J = sum_i s_i g_i g_i^T`` and ``g_i = (y_i - p_i) (x) x~_i`` (HC0);
HC1 multiplies by ``n / (n - k)`` (``n = sum s``, ``k = (K - 1) p``); the
cluster form sums ``s_i g_i`` within each group first and multiplies by
``G / (G - 1) (n - 1) / (n - k)``. Weights count as frequencies: a row of
weight 2 is two rows. Without a penalty ``A M^{-1} A^T`` is the inverse of
the Hessian of ``L`` in ``beta`` (statsmodels' ``cov_params``).

Average marginal effects
------------------------
.. math::

    \frac{\partial p_{ik}}{\partial x_{ij}} = p_{ik} D_{ikj}, \quad
    D_{ikj} = W_{kj} - \sum_l p_{il} W_{lj}, \qquad
    \text{AME}_{kj} = \frac{1}{n} \sum_i s_i p_{ik} D_{ikj}.

Their standard errors are by the delta method, ``J_me Cov(beta) J_me^T``,
with the exact Jacobian (``j'`` the design column of feature ``j``,
``x~`` the design row):

.. math::

    \frac{\partial (p_{ik} D_{ikj})}{\partial \beta_{mq}}
    = p_{ik} (\delta_{km} - p_{im}) \tilde x_{iq} D_{ikj}
    - p_{ik} p_{im} D_{imj} \tilde x_{iq}
    + \delta_{qj'} p_{ik} (\delta_{km} - p_{im}).

Prediction intervals
--------------------
For class ``k`` at ``x``, the log-odds ``eta_k = log(p_k / (1 - p_k)) =
z_k - log sum_{l != k} exp(z_l)`` has gradient ``(delta_km - q_m) x~`` in
``beta_m``, where ``q`` is the softmax over the classes other than ``k``
(``q_k = 0``). The interval ``expit(eta_k +- z_{1 - alpha/2} se(eta_k))``
stays inside ``[0, 1]``.
"""

import html
import warnings

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from scipy.special import expit, logsumexp
from scipy.stats import norm
from sklearn.utils.validation import check_is_fitted, validate_data

from ._classifier import _check_sample_weight, _class_weight_vector
from ._loss import MultinomialLoss, softmax

COV_TYPES = ("nonrobust", "HC0", "HC1", "cluster")

# A design column counts as collinear with the columns before it when its
# residual sum of squares is below this fraction of its own (its residual
# norm below 1e-6 of its norm).
COLLINEAR_RTOL = 1e-12

# Rows per block in the sandwich and marginal-effect sums.
BLOCK_ROWS = 1024


def _fitted_penalty(estimator):
    """``C`` of the fitted model (``C_`` for the cross-validated estimator); L2 only."""
    C = float(estimator.C_ if hasattr(estimator, "C_") else estimator.C)
    l1_ratio = float(getattr(estimator, "l1_ratio_", getattr(estimator, "l1_ratio", 0.0)))
    if l1_ratio > 0 and np.isfinite(C):
        raise ValueError(
            f"inference needs an L2 penalty or none; the model has l1_ratio={l1_ratio}. "
            "The L1 part sets coefficients to exactly zero, and the normal approximation "
            "behind standard errors does not hold for such estimates."
        )
    return C


def _term_names(estimator):
    names = getattr(estimator, "feature_names_in_", None)
    if names is None:
        names = [f"x{j}" for j in range(estimator.n_features_in_)]
    names = [str(name) for name in names]
    return (["intercept"] if estimator.fit_intercept else []) + names


def _design_index(n_classes, n_features, fit_intercept):
    """Position in the loss's flat layout (coef rows, then intercepts) of each (class, term)."""
    p = n_features + fit_intercept
    index = np.empty((n_classes, p), dtype=np.intp)
    for k in range(n_classes):
        if fit_intercept:
            index[k, 0] = n_classes * n_features + k
        index[k, fit_intercept:] = k * n_features + np.arange(n_features)
    return index


def _design_block(X, rows, fit_intercept, center=None):
    """Rows of the design ``[1, x - center]`` (``[x]`` without an intercept), dense."""
    block = X[rows]
    block = block.toarray() if sp.issparse(block) else np.array(block, dtype=np.float64)
    if center is not None:
        block -= center
    if fit_intercept:
        block = np.hstack([np.ones((block.shape[0], 1)), block])
    return block


def _weighted_mean(X, weight):
    return np.asarray(X.T @ weight).ravel() / weight.sum()


def _collinear_columns(X, weight, fit_intercept, center):
    """Design columns in the span of the columns before them (intercept first), as indices.

    Computed on the centred columns: a column ``1e6 + 0.01 z`` is identified,
    but uncentred it lies within rounding of the intercept's span. A centred
    column whose spread is below 1e-10 of its size counts as constant.
    """
    n_samples = X.shape[0]
    blocks = range(0, n_samples, BLOCK_ROWS)
    gram, size = 0.0, 0.0
    for start in blocks:
        rows = slice(start, start + BLOCK_ROWS)
        design = _design_block(X, rows, fit_intercept)
        size = np.maximum(size, np.abs(design).max(axis=0, initial=0.0))
        design[:, fit_intercept:] -= center
        gram = gram + design.T @ (weight[rows, None] * design)
    constant = np.diag(gram) <= (1e-10 * size) ** 2 * weight.sum()
    if fit_intercept:
        constant[0] = False
    # Cholesky factor of the kept columns' Gram matrix, grown one column at a
    # time: a column's squared residual on the kept ones is its Schur complement.
    n_columns = gram.shape[0]
    lower = np.zeros((n_columns, n_columns))
    kept, dropped = [], []
    for j in range(n_columns):
        norm = gram[j, j]
        if kept:
            coupling = scipy.linalg.solve_triangular(
                lower[: len(kept), : len(kept)], gram[kept, j], lower=True
            )
        else:
            coupling = np.zeros(0)
        residual = norm - coupling @ coupling
        if constant[j] or not residual > COLLINEAR_RTOL * norm:
            dropped.append(j)
            continue
        lower[len(kept), : len(kept)] = coupling
        lower[len(kept), len(kept)] = np.sqrt(residual)
        kept.append(j)
    return dropped


class MarginalEffects:
    """Average marginal effects ``dP_k / dx_j`` with delta-method standard errors.

    Attributes
    ----------
    effects, se, zvalues, pvalues : ndarray of shape (n_classes, n_features)
        One row per class (all classes, the reference included), one column
        per feature.
    classes : ndarray of shape (n_classes,)
    feature_names : list of str
    cov : ndarray of shape (n_classes * n_features, n_classes * n_features)
        Covariance of the flattened effects (row by row).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_iris
    >>> from skmultilogit import MultinomialLogitClassifier, inference
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = MultinomialLogitClassifier(C=1.0).fit(X, y)
    >>> effects = inference(clf, X, y).marginal_effects()
    >>> effects.effects.shape, effects.se.shape, effects.conf_int().shape
    ((3, 4), (3, 4), (3, 4, 2))
    >>> bool(np.allclose(effects.effects.sum(axis=0), 0))  # probabilities sum to 1
    True
    """

    def __init__(self, effects, cov, classes, feature_names):
        self.effects = effects
        self.cov = cov
        self.se = np.sqrt(np.maximum(np.diag(cov), 0.0)).reshape(effects.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.zvalues = effects / self.se
        self.pvalues = 2 * norm.sf(np.abs(self.zvalues))
        self.classes = classes
        self.feature_names = feature_names

    def conf_int(self, alpha=0.05):
        """Normal intervals, shape (n_classes, n_features, 2)."""
        half = norm.ppf(1 - _check_alpha(alpha) / 2) * self.se
        return np.stack([self.effects - half, self.effects + half], axis=-1)


def _check_alpha(alpha):
    if not (isinstance(alpha, (int, float, np.floating)) and 0 < alpha < 1):
        raise ValueError(f"alpha must be a number in (0, 1); got {alpha!r}.")
    return float(alpha)


class InferenceResult:
    """Standard errors, tests and intervals for a fitted :class:`MultinomialLogitClassifier`.

    Made by :func:`inference`; see it for the meaning of each attribute.

    Attributes
    ----------
    params, bse, zvalues, pvalues : ndarray of shape (n_classes - 1, n_terms)
        Contrasts ``W_k - W_ref`` (intercept in column 0 when fitted), their
        standard errors, z statistics and two-sided p-values.
    cov : ndarray of shape ((n_classes - 1) * n_terms, (n_classes - 1) * n_terms)
        Covariance of ``params.ravel()``.
    cov_type : str
    reference_class : object
    classes : ndarray of shape (n_classes - 1,)
        The classes of the rows of ``params``.
    term_names : list of str
        ``"intercept"`` (when fitted) and the feature names.
    C : float
        The penalty of the fit (``inf``: maximum likelihood).
    n_samples : float
        Sum of the weights.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from skmultilogit import MultinomialLogitClassifier, inference
    >>> X, y = load_iris(return_X_y=True)
    >>> result = inference(MultinomialLogitClassifier(C=1.0).fit(X, y), X, y, cov_type="HC0")
    >>> result.classes.tolist(), int(result.reference_class), result.term_names[:2]
    ([1, 2], 0, ['intercept', 'x0'])
    >>> print(str(result.summary()).splitlines()[2].split())
    ['class', 'term', 'coef', 'std', 'err', 'z', 'P>|z|', '[0.025', '0.975]']
    """

    def __init__(self, estimator, X, weight, params, cov, cov_type, reference, C):
        self._estimator = estimator
        self._X = X
        self._weight = weight
        self.params = params
        self.cov = cov
        self.bse = np.sqrt(np.maximum(np.diag(cov), 0.0)).reshape(params.shape)
        self.zvalues = params / self.bse
        self.pvalues = 2 * norm.sf(np.abs(self.zvalues))
        self.cov_type = cov_type
        self._reference = reference
        self.reference_class = estimator.classes_[reference]
        self.classes = np.delete(estimator.classes_, reference)
        self.term_names = _term_names(estimator)
        self.C = C
        self.n_samples = float(weight.sum())

    # -- intervals ---------------------------------------------------------------

    def conf_int(self, alpha=0.05):
        """Normal (Wald) intervals for ``params``, shape (n_classes - 1, n_terms, 2)."""
        half = norm.ppf(1 - _check_alpha(alpha) / 2) * self.bse
        return np.stack([self.params - half, self.params + half], axis=-1)

    def _coef_rows(self):
        """All K rows ``(intercept, W_k)`` as float64, the reference row zero."""
        estimator = self._estimator
        coef = np.asarray(estimator.coef_, dtype=np.float64)
        intercept = np.asarray(estimator.intercept_, dtype=np.float64)
        rows = _rows_with_intercept(coef, intercept, estimator.fit_intercept)
        return rows - rows[self._reference]

    def predict_proba_interval(self, X, alpha=0.05):
        """Confidence intervals for the class probabilities at X, by the delta method.

        Computed on the log-odds scale of each class and mapped back, so the
        bounds lie in ``[0, 1]`` (see the module docstring for the gradient).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        alpha : float, default=0.05
            ``1 - alpha`` is the pointwise coverage.

        Returns
        -------
        lower, upper : ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``.
        """
        z_crit = norm.ppf(1 - _check_alpha(alpha) / 2)
        estimator = self._estimator
        X = validate_data(estimator, X, accept_sparse=["csr", "csc"], dtype=np.float64, reset=False)
        rows_theta = self._coef_rows()
        n_classes = rows_theta.shape[0]
        others = np.delete(np.arange(n_classes), self._reference)
        p = rows_theta.shape[1]
        cov4 = self.cov.reshape(n_classes - 1, p, n_classes - 1, p)
        lower = np.empty((X.shape[0], n_classes))
        upper = np.empty_like(lower)
        for start in range(0, X.shape[0], BLOCK_ROWS):
            rows = slice(start, start + BLOCK_ROWS)
            design = _design_block(X, rows, estimator.fit_intercept)
            logits = design @ rows_theta.T
            # quad[i, m, n] = x~_i Cov(beta_m, beta_n) x~_i^T
            quad = np.einsum("iq,mqnr,ir->imn", design, cov4, design, optimize=True)
            for k in range(n_classes):
                rest = np.delete(np.arange(n_classes), k)
                log_rest = logsumexp(logits[:, rest], axis=1)
                eta = logits[:, k] - log_rest
                q = np.exp(logits - log_rest[:, None])
                q[:, k] = 0.0
                gradient = -q[:, others]
                if k != self._reference:
                    gradient[:, np.searchsorted(others, k)] += 1.0
                variance = np.einsum("im,imn,in->i", gradient, quad, gradient)
                half = z_crit * np.sqrt(np.maximum(variance, 0.0))
                lower[rows, k] = expit(eta - half)
                upper[rows, k] = expit(eta + half)
        return lower, upper

    # -- marginal effects --------------------------------------------------------

    def marginal_effects(self):
        """Average marginal effects ``dP_k/dx_j`` over the training sample, with standard errors.

        As statsmodels' ``get_margeff(at="overall", method="dydx")``, weighted
        by ``sample_weight``; the Jacobian of the effects in ``params`` is in
        closed form (see the module docstring).

        Returns
        -------
        MarginalEffects
            ``effects`` and ``se`` of shape (n_classes, n_features).
        """
        estimator = self._estimator
        fit_intercept = estimator.fit_intercept
        X, weight = self._X, self._weight
        rows_theta = self._coef_rows()
        coef = rows_theta[:, fit_intercept:]
        n_classes, n_features = coef.shape
        p = n_features + fit_intercept
        effects = np.zeros((n_classes, n_features))
        # jacobian[k, j, m, q]: d AME_kj / d theta_mq, over all K classes m
        jacobian = np.zeros((n_classes, n_features, n_classes, p))
        diagonal_term = np.zeros((n_classes, n_classes))
        for start in range(0, X.shape[0], BLOCK_ROWS):
            rows = slice(start, start + BLOCK_ROWS)
            design = _design_block(X, rows, fit_intercept)
            s = weight[rows]
            proba = softmax(design @ rows_theta.T)
            spread = coef[None, :, :] - (proba @ coef)[:, None, :]  # D_ikj
            weighted_pd = s[:, None, None] * proba[:, :, None] * spread  # s p_ik D_ikj
            effects += weighted_pd.sum(axis=0)
            m_block = len(s)
            # p_ik (delta_km) x~_iq D_ikj
            jacobian[np.arange(n_classes), :, np.arange(n_classes), :] += np.einsum(
                "ikj,iq->kjq", weighted_pd, design
            )
            # - p_ik D_ikj p_im x~_iq
            outer = (proba[:, :, None] * design[:, None, :]).reshape(m_block, n_classes * p)
            jacobian -= (weighted_pd.reshape(m_block, -1).T @ outer).reshape(
                n_classes, n_features, n_classes, p
            )
            # - p_ik p_im D_imj x~_iq
            pd = (proba[:, :, None] * spread).reshape(m_block, n_classes * n_features)
            sp_design = (s[:, None, None] * proba[:, :, None] * design[:, None, :]).reshape(
                m_block, n_classes * p
            )
            jacobian -= (
                (sp_design.T @ pd)
                .reshape(n_classes, p, n_classes, n_features)
                .transpose(0, 3, 2, 1)
            )
            # delta_qj' p_ik (delta_km - p_im)
            weighted_proba = s[:, None] * proba
            diagonal_term += np.diag(weighted_proba.sum(axis=0)) - weighted_proba.T @ proba
        for j in range(n_features):
            jacobian[:, j, :, j + fit_intercept] += diagonal_term
        total = weight.sum()
        effects /= total
        jacobian /= total
        others = np.delete(np.arange(n_classes), self._reference)
        jacobian = jacobian[:, :, others, :].reshape(n_classes * n_features, -1)
        cov = jacobian @ self.cov @ jacobian.T
        return MarginalEffects(
            effects, cov, np.asarray(estimator.classes_), self.term_names[fit_intercept:]
        )

    # -- reporting ------------------------------------------------------------

    def _table(self, alpha):
        intervals = self.conf_int(alpha)
        table = []
        for m, label in enumerate(self.classes):
            for q, term in enumerate(self.term_names):
                table.append(
                    (
                        label,
                        term,
                        self.params[m, q],
                        self.bse[m, q],
                        self.zvalues[m, q],
                        self.pvalues[m, q],
                        intervals[m, q, 0],
                        intervals[m, q, 1],
                    )
                )
        bounds = (f"[{alpha / 2:g}", f"{1 - alpha / 2:g}]")
        header = ("class", "term", "coef", "std err", "z", "P>|z|") + bounds
        return header, table

    def _caption(self):
        penalty = "none (maximum likelihood)" if not np.isfinite(self.C) else f"L2, C={self.C:g}"
        return (
            f"Multinomial logit: {len(self.classes) + 1} classes, reference class "
            f"{self.reference_class}, n={self.n_samples:g}, penalty {penalty}, "
            f"covariance {self.cov_type}"
        )

    def summary(self, alpha=0.05):
        """The coefficient table: printed as text, shown as HTML in a notebook.

        Parameters
        ----------
        alpha : float, default=0.05
            Intervals of coverage ``1 - alpha``.

        Returns
        -------
        Summary
            ``str(summary)`` is a fixed-width table; notebooks render its
            ``_repr_html_``.
        """
        header, table = self._table(_check_alpha(alpha))
        return Summary(self._caption(), header, table)

    def to_frame(self, alpha=0.05):
        """The coefficient table as a pandas DataFrame indexed by (class, term).

        Needs pandas, which skmultilogit itself does not.
        """
        try:
            import pandas as pd
        except ImportError as error:  # pragma: no cover - pandas is a test dependency
            raise ImportError("to_frame needs pandas: pip install pandas") from error
        header, table = self._table(_check_alpha(alpha))
        frame = pd.DataFrame([row[2:] for row in table], columns=list(header[2:]))
        frame.index = pd.MultiIndex.from_tuples(
            [(row[0], row[1]) for row in table], names=["class", "term"]
        )
        return frame

    def __repr__(self):
        return str(self.summary())


class Summary:
    """A coefficient table that prints as text and renders as HTML."""

    def __init__(self, caption, header, table):
        self.caption = caption
        self.header = header
        self.table = table

    def _cells(self):
        def number(value):
            return f"{value:.4g}" if abs(value) >= 1e-4 or value == 0 else f"{value:.2e}"

        return [
            [str(row[0]), str(row[1])] + [number(value) for value in row[2:]] for row in self.table
        ]

    def __str__(self):
        cells = self._cells()
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(self.header)]

        def line(values):
            return "  ".join(
                v.ljust(w) if i < 2 else v.rjust(w)
                for i, (v, w) in enumerate(zip(values, widths, strict=True))
            )

        rule = "-" * len(line(self.header))
        return "\n".join([self.caption, rule, line(self.header), rule] + [line(c) for c in cells])

    def __repr__(self):
        return str(self)

    def _repr_html_(self):
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.header)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"
            for cells in self._cells()
        )
        return (
            f"<table><caption>{html.escape(self.caption)}</caption>"
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        )


def inference(
    estimator,
    X,
    y,
    sample_weight=None,
    *,
    reference_class=None,
    cov_type="nonrobust",
    groups=None,
):
    """Standard errors, z tests, intervals and marginal effects for a fitted model.

    Parameters
    ----------
    estimator : MultinomialLogitClassifier or MultinomialLogitClassifierCV
        Fitted, with no L1 part (``l1_ratio=0``, or ``C=np.inf``).
    X : {array-like, sparse matrix} of shape (n_samples, n_features)
        The training data the estimator was fitted on.
    y : array-like of shape (n_samples,)
        Its labels, all among ``estimator.classes_``.
    sample_weight : array-like of shape (n_samples,), default=None
        The weights of the fit (frequency weights: a row of weight 2 counts
        as two rows). The estimator's ``class_weight`` is applied on top, as
        in ``fit``.
    reference_class : label, default=None
        The class whose row is subtracted; ``classes_[0]`` when None.
    cov_type : {"nonrobust", "HC0", "HC1", "cluster"}, default="nonrobust"
        "nonrobust": the inverse Hessian of the (penalised) weighted
        log-likelihood. "HC0", "HC1": the sandwich, HC1 with the factor
        ``n / (n - k)``. "cluster": the sandwich with scores summed within
        ``groups``.
    groups : array-like of shape (n_samples,), default=None
        Cluster labels, for ``cov_type="cluster"`` only.

    Returns
    -------
    InferenceResult

    Raises
    ------
    ValueError
        Without a penalty (``C=np.inf``), when design columns are constant
        (besides the intercept) or collinear: their coefficients are not
        identified, and the error names them; when the classes are
        (quasi-)separated, found by a linear program, so that the estimate is
        infinite; or when the Hessian is singular. Also for an L1 penalty,
        and for labels unknown to the estimator.

    Notes
    -----
    With ``C < inf`` the covariance is that of the penalised estimate: its
    spread around its own expectation, which is shrunk towards zero. Intervals
    built from it are narrower than the estimate's distance to the true
    coefficients can be, and tests against zero are conservative in the
    direction of the shrinkage; they are not the intervals of an unpenalised
    fit. The nonrobust form is also the covariance of a Gaussian
    approximation to the posterior under a ``N(0, C)`` prior on every
    coefficient.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_iris
    >>> from skmultilogit import MultinomialLogitClassifier, inference
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = MultinomialLogitClassifier(C=1.0).fit(X, y)
    >>> result = inference(clf, X, y)
    >>> result.params.shape, result.bse.shape, result.conf_int().shape
    ((2, 5), (2, 5), (2, 5, 2))
    >>> bool(np.all(result.bse > 0))
    True
    >>> lower, upper = result.predict_proba_interval(X[:3])
    >>> bool(np.all((lower <= clf.predict_proba(X[:3])) & (clf.predict_proba(X[:3]) <= upper)))
    True
    """
    check_is_fitted(estimator)
    if not isinstance(cov_type, str) or cov_type not in COV_TYPES:
        raise ValueError(f"cov_type must be one of {list(COV_TYPES)}; got {cov_type!r}.")
    if (cov_type == "cluster") != (groups is not None):
        raise ValueError("groups are needed with cov_type='cluster', and only with it.")
    C = _fitted_penalty(estimator)
    X = validate_data(estimator, X, accept_sparse=["csr", "csc"], dtype=np.float64, reset=False)
    classes = estimator.classes_
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(
            f"y must be 1-d with one label per row of X ({X.shape[0]}); got shape {y.shape}."
        )
    y_index = np.searchsorted(classes, y)
    y_index = np.minimum(y_index, len(classes) - 1)
    unknown = classes[y_index] != y
    if np.any(unknown):
        raise ValueError(
            f"y holds labels the estimator was not fitted on: {np.unique(y[unknown])[:10].tolist()}"
            f"; its classes are {classes.tolist()}."
        )
    if reference_class is None:
        reference = 0
    else:
        matches = np.flatnonzero(classes == reference_class)
        if matches.size != 1:
            raise ValueError(
                f"reference_class={reference_class!r} is not one of the classes {classes.tolist()}."
            )
        reference = int(matches[0])
    weight = _check_sample_weight(sample_weight, X.shape[0])
    weight = (
        weight * _class_weight_vector(estimator.class_weight, classes, y_index, weight)[y_index]
    )
    n_classes, n_features = len(classes), X.shape[1]
    fit_intercept = estimator.fit_intercept
    p = n_features + fit_intercept

    # Everything below is computed for the centred features (b = c - W center),
    # where the intercept is not nearly collinear with features far from zero,
    # and mapped back at the end.
    center = _weighted_mean(X, weight) if fit_intercept else np.zeros(n_features)
    if not np.isfinite(C):
        dropped = _collinear_columns(X, weight, fit_intercept, center)
        if dropped:
            names = [_term_names(estimator)[q] for q in dropped]
            raise ValueError(
                f"Without a penalty (C=np.inf) the coefficients of {len(dropped)} column(s) "
                f"are not identified: {names[:20]}{' ...' if len(names) > 20 else ''} are "
                "constant or (numerically) linear combinations of the columns before them. "
                "Drop these columns and refit, or fit with a finite C."
            )

    loss = MultinomialLoss(
        X, y_index, n_classes, weight, C=np.inf, fit_intercept=fit_intercept, normalize=False
    )
    coef = np.asarray(estimator.coef_, dtype=np.float64)
    intercept = np.asarray(estimator.intercept_, dtype=np.float64)
    w = loss.pack(coef, intercept)
    _warn_if_not_at_optimum(loss, w, C)
    if not np.isfinite(C):
        _check_not_separated(X, y_index, weight, n_classes, fit_intercept)
    index = _design_index(n_classes, n_features, fit_intercept).ravel()
    hessian = loss.hessian(w, center=center, include_penalty=False)
    hessian = np.triu(hessian) + np.triu(hessian, 1).T
    hessian = hessian[np.ix_(index, index)]  # in (class, term) order
    if np.isfinite(C):
        coef_terms = np.flatnonzero(np.tile(np.arange(p) >= fit_intercept, n_classes))
        hessian[coef_terms, coef_terms] += 1.0 / C
        shared = [0] if fit_intercept else []
    else:
        shared = list(range(p))
    # Directions every class shares (see the module docstring): U U^T.
    for q in shared:
        u = np.zeros((n_classes, p))
        u[:, q] = 1.0 / np.sqrt(n_classes)
        hessian += np.outer(u.ravel(), u.ravel())
    contrast = np.kron(np.delete(np.eye(n_classes), reference, axis=0), np.eye(p))
    contrast[:, reference * p : (reference + 1) * p] = -np.kron(
        np.ones((n_classes - 1, 1)), np.eye(p)
    )
    # Factored in units where every diagonal entry is 1 (so that feature units
    # do not count), with LAPACK's estimate of the condition number.
    unit = 1.0 / np.sqrt(np.diag(hessian))
    scaled = unit[:, None] * hessian * unit
    factor, info = scipy.linalg.lapack.dpotrf(scaled, lower=0, clean=1)
    rcond = 0.0
    if info == 0:
        rcond, info = scipy.linalg.lapack.dpocon(factor, np.abs(scaled).sum(axis=0).max())
    if not rcond > 1e-12:
        raise ValueError(
            "The Hessian of the log-likelihood is singular at the estimate (reciprocal "
            f"condition number {rcond:.1e}): the unpenalised estimate is undetermined "
            "(nearly collinear features, or nearly separated classes). Fit with a finite C."
        )
    # M^-1 A^T = D S^-1 D A^T with D = diag(unit)
    solved = unit[:, None] * scipy.linalg.cho_solve((factor, False), unit[:, None] * contrast.T)
    if cov_type == "nonrobust":
        cov = contrast @ solved
    else:
        meat, scale = _score_outer_product(X, y_index, weight, w, loss, cov_type, groups, center)
        cov = scale * (solved.T @ meat @ solved)
    # back from (c, W) to (b, W): b = c - W center, the same map for every class
    to_original = np.eye(p)
    if fit_intercept:
        to_original[0, 1:] = -center
    to_original = np.kron(np.eye(n_classes - 1), to_original)
    cov = to_original @ cov @ to_original.T
    cov = (cov + cov.T) / 2
    params = _rows_with_intercept(coef, intercept, fit_intercept)
    params = np.delete(params - params[reference], reference, axis=0)
    return InferenceResult(estimator, X, weight, params, cov, cov_type, reference, C)


def _rows_with_intercept(coef, intercept, fit_intercept):
    return np.hstack([intercept[:, None], coef]) if fit_intercept else coef


def _score_outer_product(X, y_index, weight, w, loss, cov_type, groups, center):
    """The sandwich's meat ``J`` in (class, term) order and its small-sample factor."""
    n_classes = loss.n_classes
    fit_intercept = loss.fit_intercept
    coef, intercept = loss.unpack(w)
    rows_theta = _rows_with_intercept(coef, intercept, fit_intercept)
    n_params = rows_theta.size
    n_samples = X.shape[0]
    if cov_type == "cluster":
        groups = np.asarray(groups)
        if groups.shape != (n_samples,):
            raise ValueError(f"groups must have shape ({n_samples},); got {groups.shape}.")
        _, group_index = np.unique(groups, return_inverse=True)
        n_groups = group_index.max() + 1
        if n_groups < 2:
            raise ValueError("cov_type='cluster' needs at least 2 groups.")
        group_scores = np.zeros((n_groups, n_params))
    meat = np.zeros((n_params, n_params))
    for start in range(0, n_samples, BLOCK_ROWS):
        rows = slice(start, start + BLOCK_ROWS)
        design = _design_block(X, rows, fit_intercept)
        residual = -softmax(design @ rows_theta.T)
        design = _design_block(X, rows, fit_intercept, center)  # scores for (c, W)
        residual[np.arange(residual.shape[0]), y_index[rows]] += 1.0
        scores = (residual[:, :, None] * design[:, None, :]).reshape(residual.shape[0], -1)
        if cov_type == "cluster":
            np.add.at(group_scores, group_index[rows], weight[rows, None] * scores)
        else:
            meat += scores.T @ (weight[rows, None] * scores)
    total = weight.sum()
    k = (n_classes - 1) * rows_theta.shape[1]
    if cov_type == "cluster":
        meat = group_scores.T @ group_scores
        scale = n_groups / (n_groups - 1) * (total - 1) / (total - k)
    elif cov_type == "HC1":
        scale = total / (total - k)
    else:
        scale = 1.0
    return meat, scale


def _check_not_separated(X, y_index, weight, n_classes, fit_intercept):
    """Raise ValueError when the classes are (quasi-)separated: no finite MLE exists.

    Separation means a direction ``B`` (one row per class, the first fixed
    at zero) along which no sample's log-likelihood falls:
    ``x~_i (B_{y_i} - B_k) >= 0`` for every weighted sample ``i`` and class
    ``k``, with some margins positive. Moving the estimate along ``B`` then
    raises the likelihood forever. As in Konis' ``detectseparation``, a
    linear program maximises the summed margins over ``|B| <= 1``: the
    maximum is 0 exactly when there is no such direction. (A test on fitted
    probabilities misses it: the solver stops at probabilities of 0.999.)
    Columns are centred and scaled first, which does not change the answer.
    """
    from scipy.optimize import linprog

    counted = np.flatnonzero(weight > 0)
    design = _design_block(X, counted, False)
    if fit_intercept:
        design = design - design.mean(axis=0)
    size = np.abs(design).max(axis=0)
    design = design / np.where(size > 0, size, 1.0)
    if fit_intercept:
        design = np.hstack([np.ones((design.shape[0], 1)), design])
    labels = y_index[counted]
    n_rows, p = design.shape
    # rows (i, k) for k != y_i; columns: classes 1..K-1 (class 0 fixed at 0), p terms each
    sample, other = np.nonzero(np.arange(n_classes)[None, :] != labels[:, None])
    n_constraints = sample.size
    entries, rows, columns = [], [], []
    for cls, sign in ((labels[sample], 1.0), (other, -1.0)):
        free = cls > 0
        term_rows = np.repeat(np.flatnonzero(free), p)
        rows.append(term_rows)
        columns.append(((cls[free] - 1)[:, None] * p + np.arange(p)).ravel())
        entries.append(sign * design[sample[free]].ravel())
    margins = sp.csr_matrix(
        (np.concatenate(entries), (np.concatenate(rows), np.concatenate(columns))),
        shape=(n_constraints, (n_classes - 1) * p),
    )
    result = linprog(
        -np.asarray(margins.sum(axis=0)).ravel(),
        A_ub=-margins,
        b_ub=np.zeros(n_constraints),
        bounds=(-1.0, 1.0),
        method="highs",
    )
    if result.status == 0 and -result.fun > 1e-6 * n_rows:
        raise ValueError(
            "The classes are separated by the features (completely or quasi-completely): "
            "a direction of the coefficients raises the likelihood without bound, so the "
            "unpenalised estimate is infinite and has no standard errors. Fit with a finite C."
        )


def _warn_if_not_at_optimum(loss, w, C):
    """Warn when the estimate is not a stationary point of its objective on this data.

    The gradient is measured as the solvers measure it for ``tol`` (the
    normalised objective, in their centred and rescaled coordinates), so a
    feature of size 1e6 does not inflate it.
    """
    from ._solvers import ConditionedProblem, feature_mean_scale, feature_scale

    normalised = MultinomialLoss(
        loss.X,
        loss.y,
        loss.n_classes,
        loss.sample_weight,
        C=C,
        fit_intercept=loss.fit_intercept,
        normalize=True,
    )
    mean, spread = feature_mean_scale(loss.X, loss.fit_intercept, loss.sample_weight)
    problem = ConditionedProblem(
        normalised, mean, feature_scale(spread, normalised.penalty_strength), spread == 0
    )
    grad_max = float(np.max(np.abs(problem.loss_gradient(problem.to_conditioned(w))[1])))
    if grad_max > 1e-3:
        warnings.warn(
            f"The estimate is not at the optimum of its objective on this data (largest "
            f"gradient entry {grad_max:.1e}): pass the data and weights it was fitted on, or "
            "refit with a smaller tol. The standard errors assume an optimum.",
            UserWarning,
            stacklevel=3,
        )
