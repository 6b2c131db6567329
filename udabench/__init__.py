"""udabench: a benchmark harness for unsupervised domain adaptation in semantic segmentation."""

from .errors import ConfigError, DataError, UdabenchError
from .method import Method
from .registry import register
from .version import __version__

__all__ = ["ConfigError", "DataError", "Method", "UdabenchError", "register", "__version__"]
