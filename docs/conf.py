"""Sphinx configuration of cimsim's documentation: the README's tour as the first page, the API reference
generated from the docstrings, and the references. Built in CI with warnings as errors (.ci/run):

    pip install -c constraints.txt -e ".[docs]" && python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))   # a plain checkout documents itself, installed or not
os.environ.setdefault("MPLBACKEND", "Agg")

from cimsim._version import __version__  # noqa: E402

project = "cimsim"
author = "the cimsim developers"
copyright = "the cimsim developers"
release = version = __version__

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
myst_heading_anchors = 3          # the README's '#section' links resolve
suppress_warnings = ["myst.xref_missing", "myst.header"]   # the README links files of the repository, not pages

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = False
napoleon_numpy_docstring = False

html_theme = "alabaster"
html_title = f"cimsim {release}"
