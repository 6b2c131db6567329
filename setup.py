"""Packaging beyond pyproject.toml: the repository's top-level ``methods/``, ``suites/`` and ``docs/`` ship inside the
package.

They stay where users know them in a checkout, and become ``udabench/builtin_methods``, ``udabench/builtin_suites`` and
``udabench/builtin_docs`` in a wheel or a ``pip install .``, where ``udabench/builtin.py`` finds them (messages that
cite ``docs/<name>.md`` name the installed copy).
"""

from setuptools import find_packages, setup

BUILTIN = {"udabench.builtin_methods": "methods", "udabench.builtin_suites": "suites", "udabench.builtin_docs": "docs"}

setup(packages=find_packages(include=["udabench", "udabench.*"]) + list(BUILTIN),
      package_dir=BUILTIN,
      package_data={"udabench.builtin_suites": ["*.yaml", "paper/*.yaml", "paper/*/*.yaml", "references/*.yaml"],
                    "udabench.builtin_docs": ["*.md"]})
