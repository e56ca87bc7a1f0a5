"""Write a folder so that readers see either the previous version or the complete new one, never a mix.

A merge writes gigabytes over minutes; a crash, a full disk or Ctrl-C midway must not leave a
half-written model that loads and produces garbage, nor destroy the output of an earlier run. So the
folder is built in a hidden temporary sibling (same file system, so renames are atomic) and renamed
into place only once every file is complete and flushed. On failure the sibling is removed and the
previous folder, if any, is untouched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from graphpress.errors import BackendError

__all__ = ["atomic_folder"]


@contextmanager
def atomic_folder(output: str | Path) -> Iterator[Path]:
    """Yield an empty staging folder; on normal exit it replaces ``output``, on an exception it is deleted."""
    output = Path(output).absolute()
    if output.exists() and not output.is_dir():
        raise BackendError(f"{output} exists and is not a folder; refusing to replace it")
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.parent))
    try:
        yield staging
        _publish(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _publish(staging: Path, output: Path) -> None:
    # mkdtemp makes the folder private (0700); give it the permissions a plain mkdir would have.
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)
    if not output.exists():
        os.rename(staging, output)
    else:
        # Two renames: the old folder steps aside, then the new one takes its name. If the second fails,
        # the old one is put back, so some complete version always exists.
        retired = output.parent / f".{output.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(output, retired)
        try:
            os.rename(staging, output)
        except BaseException:
            os.rename(retired, output)
            raise
        shutil.rmtree(retired, ignore_errors=True)
    _fsync_folder(output.parent)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (directory entries are flushed separately from file data)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # some platforms cannot open folders; the rename is still atomic, only durability is weaker
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
