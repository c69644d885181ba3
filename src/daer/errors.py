"""Exceptions that carry a message meant for a person: what went wrong and where."""


class DaerError(Exception):
    """Base class: the CLI prints these as ``error: <message>`` and exits with status 2."""


class BadInputError(DaerError):
    """A file, row or request that cannot be used (malformed, empty, too large, non-finite...)."""


class IntegrityError(DaerError):
    """A damaged or mismatched artifact: checkpoint, index, shard or manifest."""
