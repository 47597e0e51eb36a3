"""scikit-learn's own estimator contract, with no expected failures.

The instances as a user constructs them, the defaults first. C = 1e4 and the
cross-validated default (whose Cs reach 1e4) are the hard cases of the
sample-weight checks: 15 samples of 30 features are separable, the penalty is
weak, and weighted rows must give the predictions of repeated rows to 1e-7.
"""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skmultilogit import MultinomialLogitClassifier, MultinomialLogitClassifierCV


@parametrize_with_checks(
    [
        MultinomialLogitClassifier(),
        MultinomialLogitClassifierCV(),
        MultinomialLogitClassifier(C=1e4),
        MultinomialLogitClassifier(l1_ratio=0.5),
        MultinomialLogitClassifierCV(Cs=[0.1, 1.0, 10.0], cv=3),
        MultinomialLogitClassifierCV(Cs=[0.5, 5.0], l1_ratios=(0.0, 0.5), cv=2, refit=False),
        MultinomialLogitClassifier(coef_bounds=(-0.5, 1.0)),
        MultinomialLogitClassifier(l1_ratio=0.5, l1_groups="feature"),
        MultinomialLogitClassifierCV(Cs=[0.1, 10.0], cv=2, coef_bounds=(0.0, 1e300)),
    ]
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
