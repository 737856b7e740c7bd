"""The one rule for every file the package writes: a temporary file in the same folder,
then a rename, so a reader (or a later run) sees the old file or the whole new one, never a
part, and a failed write (a full disk, a kill) leaves the earlier file as it was and no
temporary file behind. Paths are used exactly as given (no extension is added), and an
error names the path and the OS's reason (OSError with `filename` and `strerror`)."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets


def _os_error(code: int, path: str) -> OSError:
  return OSError(code, os.strerror(code), path)


def check_writable(path: str) -> str:
  """`path` as it will be written (a symbolic link: its target), or the OSError a write
  would meet: a missing or read-only folder, a folder or a device where the file should be.
  Commands call it before any work, so a bad output path costs nothing."""
  if not path or path.endswith(os.sep):
    raise _os_error(errno.EISDIR if path else errno.ENOENT, path or "''")   # a folder's name, or none
  path = os.path.realpath(path) if os.path.islink(path) else path
  folder = os.path.dirname(os.path.abspath(path))
  if not os.path.exists(folder):
    raise _os_error(errno.ENOENT, folder)
  if not os.path.isdir(folder):
    raise _os_error(errno.ENOTDIR, folder)
  if os.path.isdir(path):
    raise _os_error(errno.EISDIR, path)
  if os.path.exists(path) and not os.path.isfile(path):
    raise OSError(errno.EEXIST, "exists and is not a regular file", path)
  if not os.access(folder, os.W_OK):
    raise _os_error(errno.EACCES, folder)
  return path


@contextlib.contextmanager
def replacing(path: str, suffix: str = ""):
  """Yields a new temporary path beside `path` (ending in `suffix`, for writers that pick a
  format by extension); when the block ends without an error it is renamed to `path`,
  otherwise removed. OSErrors name `path` (not the temporary file)."""
  path = check_writable(path)
  folder, name = os.path.split(os.path.abspath(path))
  tmp = os.path.join(folder, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp{suffix}")
  try:
    yield tmp
    os.replace(tmp, path)
  except OSError as e:
    if e.filename in (tmp, path) or e.filename is None:
      raise OSError(e.errno, e.strerror or str(e), path) from None
    raise
  finally:
    with contextlib.suppress(OSError):
      os.remove(tmp)


def write_atomic(path: str, write, mode: str = "w") -> None:
  """write(f) into a temporary file beside `path` (flushed to disk), then renamed to `path`.
  `mode`: "w" (text) or "wb"."""
  with replacing(path) as tmp:
    with open(tmp, mode.replace("w", "x")) as f:   # "x": never an existing file
      write(f)
      f.flush()
      os.fsync(f.fileno())


def write_atomic_path(path: str, write, suffix: str = "") -> None:
  """write(tmp_path) for writers that take a path, not a file (PIL, matplotlib): `suffix`
  gives the temporary file the extension they pick the format by; then renamed to `path`."""
  with replacing(path, suffix) as tmp:
    write(tmp)


def same_file(a: str, b: str) -> bool:
  """Whether two paths name the same file or folder (the same path where neither exists)."""
  try:
    return os.path.samefile(a, b)
  except OSError:
    return os.path.realpath(a) == os.path.realpath(b)


def sha256(path: str) -> str:
  """SHA-256 of a file's bytes, read in 1 MiB blocks."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()
