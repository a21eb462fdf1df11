"""Errors a user can cause.

Every exception here carries a message meant for a person: it names the
file or value at fault, says what is wrong and, where it can, what to do.
The CLI prints it on one line and the dashboard shows it in an error box;
neither shows a traceback for these.
"""


class VeerError(Exception):
    """Base class for every user-facing veer error."""


class ImageReadError(VeerError):
    """A scan could not be read (missing, damaged, unsupported or too large)."""


class MaskError(VeerError):
    """A mask breaks the data contract (size, channels, values)."""


class ModelFileError(VeerError):
    """A weight file or model card is missing, damaged or does not match."""


class ConfigError(VeerError):
    """An option or argument has a value veer cannot use."""


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (its type name when it has none)."""
    return " ".join(str(exc).split()) or type(exc).__name__
