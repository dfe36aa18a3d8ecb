"""fithub's exception tree.

    FithubError
     +-- ConfigError          a setting is missing or wrong
     +-- DecodeError          a file or payload cannot be read (names it, where, why)
     +-- SourceUnavailable    a device, folder or service cannot be reached now
     +-- AuthFailed           credentials were refused
     +-- DeviceError          a BLE sensor misbehaved
     +-- StorageError         the database or raw archive failed
     +-- NotFound             an id asked for does not exist

Foreign exceptions are mapped to the most specific of these at the boundary where
they occur and chained (``raise ... from exc``), so callers never see a library's
internals. Expected outcomes (duplicate, not an activity) are values, not errors.
"""

from __future__ import annotations


class FithubError(Exception):
    """Base of every error fithub raises on purpose."""


class ConfigError(FithubError):
    pass


class DecodeError(FithubError):
    """A file or payload could not be decoded.

    ``name`` is the file (as the user gave it) or topic, ``where`` the position in it
    (byte offset, line, message number) when known, ``why`` what was wrong.
    """

    def __init__(self, name: str | None, why: str, where: str | None = None) -> None:
        self.name = name or "<input>"
        self.why = why
        self.where = where
        super().__init__(str(self))

    def __str__(self) -> str:
        at = f" at {self.where}" if self.where else ""
        return f"{self.name}{at}: {self.why}"


class SourceUnavailable(FithubError):
    pass


class AuthFailed(FithubError):
    pass


class DeviceError(FithubError):
    pass


class StorageError(FithubError):
    pass


class NotFound(FithubError):
    pass
