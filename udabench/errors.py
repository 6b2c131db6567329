"""The exception types of udabench. ``UdabenchError`` and its subclasses are what the CLI turns into a clean
message (exit code 2, no traceback); ``NonFiniteLoss`` fails one run, not the suite."""


class UdabenchError(Exception):
    """A user-facing error: the message names the file or key, what was expected and how to fix it."""


class ConfigError(UdabenchError):
    """A suite file, override or hyper-parameter block that does not match the schema."""


class DataError(UdabenchError):
    """A dataset folder, file or label that is missing or not in the expected format."""


class CheckpointError(UdabenchError):
    """A checkpoint that cannot be read or does not fit the run: bad input that fails its run (the others go on)."""


class PluginError(UdabenchError):
    """A method plugin that breaks the plugin contract (docs/adding-a-method.md); the message names its file.
    Met inside a run (e.g. what ``train_step`` returns), it fails that run like a ``CheckpointError``."""


class NonFiniteLoss(UdabenchError):
    """A method logged a NaN or infinite loss: the update is not applied and the run is marked failed."""


class DiskFull(UdabenchError):
    """A write found no space left on its filesystem: the message names the file, the space it needs and the space
    there is. The file's previous version stays and nothing partial is left behind; the run is marked failed."""
