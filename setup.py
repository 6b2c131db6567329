"""Packaging beyond pyproject.toml: the repository's top-level ``methods/`` and ``suites/`` ship inside the package.

They stay where users know them in a checkout, and become ``udabench/builtin_methods`` and
``udabench/builtin_suites`` in a wheel or a ``pip install .``, where ``udabench/builtin.py`` finds them.
"""

from setuptools import find_packages, setup

BUILTIN = {"udabench.builtin_methods": "methods", "udabench.builtin_suites": "suites"}

setup(packages=find_packages(include=["udabench", "udabench.*"]) + list(BUILTIN),
      package_dir=BUILTIN,
      package_data={"udabench.builtin_suites": ["*.yaml", "paper/*.yaml", "paper/*/*.yaml", "references/*.yaml"]})
