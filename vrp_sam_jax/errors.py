"""Every error the library raises on purpose. Each carries one line naming the file or the
argument and the problem; the command line prints it as `vrp-sam: error: ...` (exit status 2)
instead of a traceback."""

from __future__ import annotations

from sam_port.torch_pickle import CheckpointError
from sam_port.video_frames import FrameError


class InputError(ValueError):
    """Bad user input (a file, an argument), with the file and the problem in the message."""


class DataError(InputError):
    """A dataset file is missing, unreadable or inconsistent."""


class ConfigError(InputError):
    """A config file or override that cannot describe a run."""


class CheckpointMismatchError(InputError):
    """A checkpoint that does not belong to this config."""


class DownloadError(InputError):
    """A download that failed or does not match its published checksum."""


# What the command line reports as one line (a missing file reported by the OS included).
EXPECTED_ERRORS = (InputError, CheckpointError, FrameError, FileNotFoundError)

__all__ = ["EXPECTED_ERRORS", "CheckpointError", "CheckpointMismatchError", "ConfigError",
           "DataError", "DownloadError", "FrameError", "InputError"]
