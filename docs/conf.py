"""Sphinx configuration: numpydoc API pages, a sphinx-gallery of examples, MyST pages."""

import re
from importlib.metadata import version as _version

project = "skmultilogit"
author = "the skmultilogit developers"
release = _version("skmultilogit")
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "examples", "benchmark_results/*.md"]
templates_path = ["_templates"]

autosummary_generate = True
autodoc_default_options = {"inherited-members": False}
# autosummary lists the members; numpydoc's own member tables would duplicate them
numpydoc_show_class_members = False
numpydoc_xref_param_type = False

myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "doc_module": ("skmultilogit",),
    "reference_url": {"skmultilogit": None},
    "backreferences_dir": "gen_modules/backreferences",
    "within_subsection_order": "FileNameSortKey",
    "remove_config_comments": True,
    "abort_on_example_error": True,
}

html_theme = "pydata_sphinx_theme"
html_title = "skmultilogit"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    # the wide benchmark tables get the whole width
    "secondary_sidebar_items": {"**": ["page-toc", "sourcelink"], "benchmarks": []},
}
# Single pages have no section navigation: drop the empty left sidebar.
html_sidebars = {
    page: []
    for page in ("index", "getting_started", "user_guide", "derivation", "benchmarks", "changelog")
}


# Methods inherited from scikit-learn (ClassifierMixin.score) bring its
# docstrings, whose :ref: labels are targets of scikit-learn's site, not of
# this one: their text stays, without the link.
_REF = re.compile(r":ref:`(?:([^`<]+?)\s*<[^`>]+>|([^`]+))`")


def _sklearn_refs_as_text(app, what, name, obj, options, lines):
    if getattr(obj, "__module__", None) and obj.__module__.startswith("sklearn."):
        lines[:] = [_REF.sub(lambda match: match[1] or match[2], line) for line in lines]


def setup(app):
    app.connect("autodoc-process-docstring", _sklearn_refs_as_text)
