"""Sphinx configuration of the API reference (built from the docstrings).

Build: ``sphinx-build -W -b html docs/api OUT`` (tests/host/test_api_docs.py does, warnings as
errors).  The by-example guides are the Markdown files in docs/ and the README.
"""
project = "bpfoom"
extensions = ["sphinx.ext.autodoc"]
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}
# The cffi extension is built by the package install; the reference never needs the kernel.
html_theme = "alabaster"
exclude_patterns = ["_build"]
# ``type[BpfError]`` in a signature is the builtin, but the Python domain also finds the
# ``type`` properties of Map and Program and warns that the reference is ambiguous.
suppress_warnings = ["ref.python"]
