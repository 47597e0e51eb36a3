"""
Digits: fit, accuracy, confusion matrix and the ten weight images
=================================================================

Fit the multinomial model on the raw 8x8 digit images, measure it on held-out
images, and look inside: the model has one weight vector per class, and with
64 pixel features each is an 8x8 image of which pixels vote for that digit.
"""

# %%
# Fit
# ---
# No feature scaling: the solver works in internally standardised coordinates,
# and the fit still ends at the optimum of the objective on the raw pixels.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.metrics import ConfusionMatrixDisplay
from sklearn.model_selection import train_test_split

from skmultilogit import MultinomialLogitClassifier

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
clf = MultinomialLogitClassifier(C=1.0).fit(X_train, y_train)
print(f"iterations: {clf.n_iter_[0]}, test accuracy: {clf.score(X_test, y_test):.3f}")

# %%
# Confusion matrix
# ----------------
# Rows are true digits, columns predictions; the few errors sit where digits
# look alike.
ConfusionMatrixDisplay.from_estimator(clf, X_test, y_test, colorbar=False)
plt.title("Test-set confusion matrix")
plt.show()

# %%
# The ten weight vectors as images
# --------------------------------
# ``coef_[k]`` reshaped to 8x8: red pixels raise the logit of digit ``k``,
# blue pixels lower it. Columns of ``coef_`` sum to zero over the classes
# (the penalty's choice among equivalent parametrisations), so each image says
# how a pixel favours this digit relative to the others. At ``C=1`` the
# weights are sharp and pixel-specific; a much stronger penalty (``C=0.001``)
# trades a little accuracy for smooth weights in which the digits' shapes
# show. Colours are clipped at the 99th percentile of ``|coef_|`` so that a
# few extreme pixels do not wash out the rest.
smooth = MultinomialLogitClassifier(C=0.001).fit(X_train, y_train)
print(f"C=0.001: test accuracy {smooth.score(X_test, y_test):.3f}")
fig, axes = plt.subplots(2, 10, figsize=(11, 2.8))
for row, (model, name) in enumerate(((clf, "C=1"), (smooth, "C=0.001"))):
    limit = np.percentile(np.abs(model.coef_), 99)
    for digit, ax in enumerate(axes[row]):
        ax.imshow(model.coef_[digit].reshape(8, 8), cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_axis_off()
        if row == 0:
            ax.set_title(str(digit))
    axes[row, 0].text(-1.5, 3.5, name, ha="right", va="center")
fig.suptitle("coef_ rows as 8x8 images")
plt.show()
