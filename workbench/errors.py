"""The few exception types the workbench raises on purpose.

Every bad input becomes one `WorkbenchError` whose message says what is wrong and what is accepted;
the CLI prints it as a single line and exits non-zero.
"""


class WorkbenchError(Exception):
    """Base class: an error meant to be shown to the user as one clear line."""


class ConfigError(WorkbenchError, ValueError):
    """A configuration value is missing, unknown or out of range."""


class StoreError(WorkbenchError):
    """A run directory or runs directory is missing, corrupt or not writable."""


class RunStopped(WorkbenchError):
    """Training stopped early for a reason recorded in the run status (NaN loss, recorder failure)."""


class RegistryUnavailable(WorkbenchError):
    """The package registry does not serve a pinned package version (nothing the project can fix)."""
