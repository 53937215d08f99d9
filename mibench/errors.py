"""User-facing errors: one line that names the problem and the fix."""


class MibenchError(Exception):
    """Base class for errors the CLI prints as a single line (no traceback)."""


class ConfigError(MibenchError, ValueError):
    """A configuration value has the wrong type, is out of range, or is unknown."""


class UnknownNameError(MibenchError, KeyError):
    """A registry lookup failed; the message lists the closest registered names."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class AccessError(MibenchError, PermissionError):
    """An attack asked for more than its declared access level allows."""


class CacheError(MibenchError):
    """A cache entry is missing, incomplete or corrupt."""
