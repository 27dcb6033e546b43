"""Typed errors for physai.

Every user-facing failure (malformed observation, spec mismatch, bad config, missing backend,
unknown registry name, corrupt checkpoint) raises one of these. Each names the field at fault and
what was expected, so a user can fix the call without reading the source. All derive from
`PhysaiError`; most also derive from the matching builtin (ValueError/KeyError/RuntimeError) so
generic handlers keep working.
"""

from __future__ import annotations


class PhysaiError(Exception):
    """Base class of every error physai raises on purpose."""


class ObservationError(PhysaiError, ValueError):
    """An observation/batch field is missing, mis-shaped, of the wrong dtype or non-finite."""

    def __init__(self, field: str, expected: str, got: str):
        self.field, self.expected, self.got = field, expected, got
        super().__init__(f"observation field '{field}': expected {expected}, got {got}")


class SpecMismatchError(PhysaiError, ValueError):
    """A model, dataset or stats file was made for a different embodiment spec."""

    def __init__(self, embodiment: str, field: str, expected, got):
        self.embodiment, self.field, self.expected, self.got = embodiment, field, expected, got
        super().__init__(
            f"embodiment '{embodiment}': spec field '{field}' differs: expected {expected!r}, got {got!r}"
        )


class ConfigError(PhysaiError, ValueError):
    """A config value is invalid (wrong type, out of range, unknown key)."""


class UnknownNameError(PhysaiError, KeyError):
    """A registry lookup failed; the message suggests close names."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class BackendUnavailableError(PhysaiError, RuntimeError):
    """A requested backend (attention kernel, GL renderer, video codec) cannot run here."""


class CheckpointError(PhysaiError, RuntimeError):
    """A checkpoint directory is missing files, corrupt, or of an unknown format version."""


class TrainingError(PhysaiError, RuntimeError):
    """Training cannot go on (a non-finite loss, gradient or weight); the last checkpoint is kept."""


class DatasetError(PhysaiError, RuntimeError):
    """A dataset cannot be written or read as asked: a writer disabled by a failed commit it could not
    undo, or files that plain LeRobot cannot load even after `physai data repair`."""
