"""The errors a run ends with on purpose, each with its exit code: what the user gave (one line,
exit 2), a run directory the system will not let us write (one line, exit 74), a run directory in
use (exit 75), a stop signal (128 + the signal). Anything else is a bug: traceback, exit 1."""
from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Iterator

EXIT_FAILED = 1
"""A task ended in error, the model backend failed, or a bug."""
EXIT_USAGE = 2
"""What the user gave is wrong: arguments, task names, task or data files."""
EXIT_CANNOT_WRITE = 74
"""The run directory cannot be written: disk full, permissions, read-only or failing filesystem
(sysexits' EX_IOERR)."""
EXIT_BUSY = 75
"""`--no-wait` and another process holds the run directory (sysexits' EX_TEMPFAIL: try again later)."""


class UserError(Exception):
    """An error the user can fix, said in one line: its message names the file, field or item,
    what is wrong and what to do. The project's own error types derive from it."""

    exit_code = EXIT_USAGE


class UsageError(UserError, ValueError):
    """Bad arguments or input that no more specific type describes. A ValueError too, so that the
    callers that catch ValueError around parsing keep doing so."""


class RunDirectoryBusy(UserError):
    """Another process holds the run directory's lock and the user asked not to wait."""

    exit_code = EXIT_BUSY


_ADVICE = {
    errno.ENOSPC: "free space on that filesystem or choose another --output-dir",
    errno.EDQUOT: "free space within your quota or choose another --output-dir",
    errno.EACCES: "fix the permissions of the folder or choose another --output-dir",
    errno.EPERM: "fix the permissions of the folder or choose another --output-dir",
    errno.EROFS: "the filesystem is read-only: choose another --output-dir",
    errno.EIO: "the device reported an I/O error: check the disk or choose another --output-dir",
}


class RunDirectoryError(UserError):
    """An OSError while writing a run's files (sample logs, manifest, results, media, lock)."""

    exit_code = EXIT_CANNOT_WRITE

    def __init__(self, path: Path | str, cause: OSError) -> None:
        self.path = Path(path)
        self.errno = cause.errno
        fault = os.strerror(cause.errno) if cause.errno else str(cause)
        code = f" ({errno.errorcode[cause.errno]})" if cause.errno in errno.errorcode else ""
        advice = _ADVICE.get(cause.errno, "choose another --output-dir")
        super().__init__(f"cannot write {self.path}: {fault}{code} -> {advice}; finished samples are "
                         "kept: rerun the same command to resume")


@contextlib.contextmanager
def writing(path: Path | str) -> Iterator[None]:
    """Turn an OSError raised while writing `path` into a RunDirectoryError naming it."""
    try:
        yield
    except RunDirectoryError:
        raise
    except OSError as exc:
        raise RunDirectoryError(path, exc) from exc


class Interrupted(BaseException):
    """SIGTERM or SIGINT asked the run to stop. A BaseException, as KeyboardInterrupt, so that no
    `except Exception` on the way up swallows it."""

    def __init__(self, signal_number: int) -> None:
        import signal

        self.signal_number = signal_number
        self.exit_code = 128 + signal_number
        super().__init__(f"stopped by {signal.Signals(signal_number).name}")
