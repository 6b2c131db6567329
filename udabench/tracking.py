"""Which experiment trackers ``train.loggers`` may name and whether each is installed (the backends themselves are
``engine/loggers.py``). Below the configuration: the default of ``train.loggers`` and the pre-flight read it."""

from __future__ import annotations

import importlib.util

from .errors import ConfigError

# backend -> the package it needs (the train.loggers values: config.TrainConfig.loggers)
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


def installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def default_loggers() -> list[str]:
    """``[tensorboard]`` where the package is importable, else none (training never needs a tracker)."""
    return ["tensorboard"] if installed("tensorboard") else []


def tracking_off(names: list[str]) -> str:
    """The line that says no tracker watches the runs, and why (``""`` when one does)."""
    if names:
        return ""
    if not installed("tensorboard"):
        return ("tracking is off: tensorboard is not installed (pip install 'udabench[tracking]'), so runs log no "
                "curves or panels (docs/monitoring.md); metrics rows are written all the same")
    return "tracking is off: train.loggers is empty"


def check_loggers(names: list[str], source: str) -> None:
    """A named backend whose package is missing is a ``ConfigError`` before any training."""
    for name in names:
        package = PACKAGES[name]
        if not installed(package):
            extra = "pip install 'udabench[tracking]'" if name == "tensorboard" else f"pip install {package}"
            raise ConfigError(f"{source}: train.loggers names {name!r}, but the {package} package is not installed "
                              f"here. Install it ({extra}) or leave it out, e.g. --set 'train.loggers=[]'.")
