"""The result objects: coefficients with standard errors, marginal effects, intervals."""

import copy

import numpy as np
from scipy.special import expit, logsumexp
from scipy.stats import norm
from sklearn.utils.validation import validate_data

from .._loss import softmax
from ._design import BLOCK_ROWS, design_block, term_names
from ._summary import Summary


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

    def __init__(self, estimator, X, weight, params, cov, cov_type, reference, objective):
        # A shallow copy: a later fit or set_params of the estimator rebinds its
        # attributes there, not here, so the intervals and effects stay those
        # of the model this covariance belongs to.
        self._estimator = copy.copy(estimator)
        self._fit_intercept = objective.fit_intercept
        self._X = X
        self._weight = weight
        self.params = params
        self.cov = cov
        self.bse = np.sqrt(np.maximum(np.diag(cov), 0.0)).reshape(params.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            # 0 / 0 for a coefficient the data do not touch under a sandwich (NaN, as in
            # statsmodels)
            self.zvalues = params / self.bse
        self.pvalues = 2 * norm.sf(np.abs(self.zvalues))
        self.cov_type = cov_type
        self._reference = reference
        self.reference_class = estimator.classes_[reference]
        self.classes = np.delete(estimator.classes_, reference)
        self.term_names = term_names(estimator, objective.fit_intercept)
        self.C = objective.C
        self.n_samples = float(weight.sum())

    # -- intervals ---------------------------------------------------------------

    def conf_int(self, alpha=0.05):
        """Normal (Wald) intervals for ``params``, shape (n_classes - 1, n_terms, 2)."""
        half = norm.ppf(1 - _check_alpha(alpha) / 2) * self.bse
        return np.stack([self.params - half, self.params + half], axis=-1)

    def _coef_rows(self):
        """All K rows ``(intercept, W_k)`` as float64, the reference row zero."""
        return np.insert(self.params, self._reference, 0.0, axis=0)

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
            design = design_block(X, rows, self._fit_intercept)
            logits = design @ rows_theta.T
            # quad[i, m, n] = x~_i Cov(beta_m, beta_n) x~_i^T, for the rows
            # scaled to a largest entry of 1 (and the scale put back in the
            # standard error): a feature of 1e155 squared overflowed, and the
            # bounds came back NaN
            row_scale = np.max(np.abs(design), axis=1, initial=0.0)
            row_scale[~(row_scale > 0)] = 1.0
            unit = design / row_scale[:, None]
            quad = np.einsum("iq,mqnr,ir->imn", unit, cov4, unit, optimize=True)
            for k in range(n_classes):
                rest = np.delete(np.arange(n_classes), k)
                log_rest = logsumexp(logits[:, rest], axis=1)
                eta = logits[:, k] - log_rest
                # only the other classes' exps (each at most 1): class k's
                # own overflowed where it dominates
                q = np.zeros_like(logits)
                q[:, rest] = np.exp(logits[:, rest] - log_rest[:, None])
                gradient = -q[:, others]
                if k != self._reference:
                    gradient[:, np.searchsorted(others, k)] += 1.0
                variance = np.einsum("im,imn,in->i", gradient, quad, gradient)
                half = z_crit * row_scale * np.sqrt(np.maximum(variance, 0.0))
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
        fit_intercept = self._fit_intercept
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
            design = design_block(X, rows, fit_intercept)
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
