"""scikit-learn's own estimator contract, with no expected failures."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skmultilogit import MultinomialLogitClassifier


@parametrize_with_checks([MultinomialLogitClassifier()])
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
