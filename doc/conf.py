# Sphinx configuration for the cplrun documentation.
import os
import sys

sys.path.insert(0, os.path.abspath('..'))

project = 'cplrun'
author = 'The cplrun developers'
extensions = ['sphinx.ext.autodoc', 'sphinx.ext.napoleon']
master_doc = 'index'
exclude_patterns = ['_build']
html_theme = 'alabaster'
