"""Writing files so that a reader sees the old file or the whole new one, never a part."""
from __future__ import annotations

import os


def write_atomic(path: str, write, mode: str = "w") -> None:
  """write(f) into a temporary file beside `path` (per process), then renamed to `path`."""
  tmp = f"{path}.{os.getpid()}.tmp"
  try:
    with open(tmp, mode) as f:
      write(f)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
