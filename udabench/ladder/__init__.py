"""The protocol ladder (docs/ladder.md): from a recipe to a protocol one factor at a time, for one method.

``factors.py`` groups the settings in which two suites differ, ``build.py`` makes the rungs and their one plan,
``manifest.py`` records them for ``udabench report --ladder`` (``analysis/ladder.py``). Nothing is imported here:
the report reads manifests without torch.
"""
