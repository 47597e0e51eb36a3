"""The README's Python examples run as written."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example_runs(code):
    namespace = {}
    exec(compile(code, str(README), "exec"), namespace)
    if "clf" in namespace:  # the fitted example model is where it says it is
        assert namespace["clf"].coef_.shape == (10, 64)
        # at the optimum: newton-cholesky polishes small problems past tol
        assert abs(namespace["grad_coef"]).max() < 1e-4


def test_readme_has_examples():
    assert BLOCKS
