"""The errors clipzero raises.

Every failure a user can cause or fix is a :class:`ClipzeroError`. Messages say what went wrong, name the item
(the file, the model, the label) and say what to do. Only the command line turns them into an exit code.
"""

from __future__ import annotations

__all__ = [
    "ClientPathRefused",
    "ClipzeroError",
    "ClipzeroWarning",
    "ConfigError",
    "ImageError",
    "LabelError",
    "MissingExtraError",
    "ModelLoadError",
    "ModelNotFoundError",
    "ModelUnavailableError",
    "RequestError",
    "StoreError",
    "TemplateError",
]


class ClipzeroError(Exception):
    """Base class of every error clipzero raises on purpose.

    Attributes:
        exit_code: the exit status the command line uses for it (1: the work failed, 2: the request was wrong).
    """

    exit_code: int = 1


class ClipzeroWarning(UserWarning):
    """Something was accepted but changed on the way (a duplicate label merged, a long label truncated)."""


class ConfigError(ClipzeroError):
    """A configuration file, environment variable or option holds a value clipzero cannot use."""

    exit_code = 2


class ModelNotFoundError(ClipzeroError):
    """A model spec names nothing clipzero knows: no such architecture, tag, registered name or path."""

    exit_code = 2


class ModelUnavailableError(ClipzeroError):
    """The model exists but its files cannot be had here: not in the local cache and the hub cannot be reached."""


class ModelLoadError(ClipzeroError):
    """The model's files were found but could not be turned into a working model (wrong shapes, unsafe pickle)."""


class ImageError(ClipzeroError):
    """An image could not be read: missing, empty, truncated, corrupt, not an image, or too large."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


class StoreError(ClipzeroError):
    """An embedding store cannot be used as asked: another model's store, a newer schema, locked by a writer."""


class TemplateError(ClipzeroError):
    """A prompt template set is missing or malformed (a template without {label}, an unknown slot)."""

    exit_code = 2


class LabelError(ClipzeroError):
    """The labels given cannot be used (none at all, a file that cannot be read, a non-text label)."""

    exit_code = 2


class RequestError(ClipzeroError):
    """A request to the service is malformed: a missing or unknown field, an empty list of images or texts, a
    number out of range. (Labels that cannot be used are a :class:`LabelError`.)"""

    exit_code = 2


class DatasetError(ClipzeroError):
    """A labelled dataset cannot be found, read or fetched, or does not fit the request (too few images)."""

    exit_code = 2


class AdapterError(ClipzeroError):
    """A fine-tuned head or adapter file is missing, malformed, or made for another model or label set."""

    exit_code = 2


class MissingExtraError(ClipzeroError):
    """A feature needs an optional dependency that is not installed; the message names the extra to install."""

    exit_code = 2


class ClientPathRefused(ClipzeroError):
    """A client named a server file it may not read: not uploaded to this server, or outside the allowed roots."""

    exit_code = 2
