"""The version of udabench: one place, read by the package, `env.json` and packaging (pyproject.toml)."""

__version__ = "0.1.0"
