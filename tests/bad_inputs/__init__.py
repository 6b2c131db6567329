"""The bad-input corpus (a package, so its conftest does not shadow tests/conftest.py)."""
