"""Errors a user can act on: each one is a single line naming what is wrong."""


class AutolabelError(Exception):
    """Base class; the CLI prints these as one line and exits non-zero."""


class ConfigError(AutolabelError):
    """The task config is invalid; the message starts with the key path."""


class DataError(AutolabelError):
    """The input data (file, columns, encoding) cannot be used."""


class ProviderError(AutolabelError):
    """A model provider cannot be set up (missing package, unreachable server, no key)."""
