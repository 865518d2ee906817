"""Writing a command's output file, typer-free (pyaudit's lean path writes --output too)."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path


def write_atomically(path: Path, data: bytes) -> None:
    """Whoever reads `path` sees the old content or the new, never half, and a failed write
    loses nothing. The temporary file is made with O_EXCL under a random name, so a link
    another user planted in a shared folder is never written through; it gets the mode a
    plain create would (0666 less the umask). Raises OSError naming `path`."""
    import tempfile  # only where a file is written: a start-up that writes none skips it

    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(descriptor, "wb") as stream:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(stream.fileno(), 0o666 & ~umask)
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
