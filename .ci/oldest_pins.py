"""Print pip constraints pinning each runtime dependency to its lower bound in pyproject.toml.

``.ci/run`` installs the package under these constraints in a second
environment and runs the test suite there, so that the lower bounds stated
in pyproject.toml (the one place they are kept) are versions that pass.
"""

import re
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10: pip vendors the same parser
    from pip._vendor import tomli as tomllib

pyproject = Path(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml")
dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
for requirement in dependencies:
    match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*>=\s*([0-9][0-9.]*)\s*", requirement)
    if match is None:
        sys.exit(f"no plain lower bound to pin in {requirement!r}")
    print(f"{match[1]}=={match[2]}")
