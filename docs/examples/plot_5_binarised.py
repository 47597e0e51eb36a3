"""
The binarised digits
====================

The classic textbook formulation of softmax regression on images uses binary
pixels: here each pixel of the 8x8 digits becomes ``1`` if its value is above
7 (of 16) and ``0`` otherwise. Fit the same model and compare it with the
grey-level one.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from skmultilogit import MultinomialLogitClassifier

X, y = load_digits(return_X_y=True)
X_binary = (X > 7).astype(np.float64)

fig, axes = plt.subplots(2, 8, figsize=(9, 2.6))
for i in range(8):
    axes[0, i].imshow(X[i].reshape(8, 8), cmap="gray_r")
    axes[1, i].imshow(X_binary[i].reshape(8, 8), cmap="gray_r")
    axes[0, i].set_title(str(y[i]))
for ax in axes.ravel():
    ax.set_axis_off()
fig.suptitle("grey levels (top) and binarised at x > 7 (bottom)")
plt.show()

# %%
# Fit both
# --------
split = train_test_split(X, X_binary, y, test_size=0.3, random_state=0)
X_train, X_test, B_train, B_test, y_train, y_test = split
grey = MultinomialLogitClassifier(C=1.0).fit(X_train, y_train)
binary = MultinomialLogitClassifier(C=1.0).fit(B_train, y_train)
print(f"grey levels: test accuracy {grey.score(X_test, y_test):.3f}")
print(f"binarised:   test accuracy {binary.score(B_test, y_test):.3f}")

# %%
# Weights of the binary model
# ---------------------------
# With 0/1 pixels each weight is exactly how much one "on" pixel adds to a
# digit's logit.
limit = np.percentile(np.abs(binary.coef_), 99)
fig, axes = plt.subplots(2, 5, figsize=(9, 4))
for digit, ax in enumerate(axes.ravel()):
    ax.imshow(binary.coef_[digit].reshape(8, 8), cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set_title(str(digit))
    ax.set_axis_off()
fig.suptitle("binarised digits: coef_ rows as 8x8 images")
plt.show()
