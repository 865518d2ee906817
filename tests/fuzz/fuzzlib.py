"""What every fuzz harness in tests/fuzz shares: the repository on sys.path, the text a
byte input stands for, one scratch folder per process, and the libFuzzer entry point.

Only the standard library and atheris are imported here: a module imported before a
harness's `atheris.instrument_imports()` block would not be instrumented, and coverage
guidance would be blind inside it."""

from __future__ import annotations

import atexit
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import atheris

REPO = Path(__file__).resolve().parents[2]
WORK = REPO / "bench" / "work" / "fuzz"
sys.path.insert(0, str(REPO))


def text_of(data: bytes) -> str:
    """The text a file of these bytes holds. The tools refuse non-UTF-8 files before any
    parser sees them, so undecodable bytes are replaced rather than wasting the input."""
    return data.decode("utf-8", "replace")


def scratch(name: str) -> Path:
    """A fresh temporary folder for this process, removed when it exits normally (a run
    that crashed leaves it behind, with the input that crashed it)."""
    path = Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def make_removable(root: Path) -> None:
    """Give every folder under `root` owner rwx, so that what an image locked (a folder of
    mode 000) can be removed again; symlinks are never followed."""
    for directory, subdirectories, _ in os.walk(root):
        for name in subdirectories:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                os.chmod(path, stat.S_IRWXU)


def empty_folder(root: Path) -> None:
    """Remove everything inside `root`, keeping `root` itself."""
    if root.is_dir() and not root.is_symlink():
        os.chmod(root, stat.S_IRWXU)
        make_removable(root)
        for child in root.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()


def run(test_one: Callable[[bytes], None], mutator: Callable[[bytes, int, int], bytes] | None = None) -> None:
    """Hand `test_one` to libFuzzer with the command line's options (corpus folders,
    -max_total_time, -artifact_prefix, ...), and `mutator` as its custom mutator."""
    if mutator is None:
        atheris.Setup(sys.argv, test_one)
    else:
        atheris.Setup(sys.argv, test_one, custom_mutator=mutator)
    atheris.Fuzz()


def yaml_documents(data: bytes) -> list[object] | None:
    """The documents pyaudit reads from a YAML/JSON file of these bytes, or None when the
    loader refuses it with its documented yaml.YAMLError. (Imported here, not at the top:
    the harness has imported it already, inside its instrumentation block.)"""
    import yaml

    from pysbx.audit.sources.yamllines import load_documents

    try:
        return [document for document in load_documents(text_of(data)) if document is not None]
    except yaml.YAMLError:
        return None


def audit_yaml(data: bytes, is_kind: Callable[[object], bool], specs_of: Callable[..., list[object]]) -> None:
    """What pyaudit does with a YAML file of one kind: load it (yaml.YAMLError is the
    loader's documented refusal), turn each document of that kind into container specs,
    and run the container rules over them. Nothing after the loader may raise."""
    from pysbx.audit.rules.container import container_findings
    from pysbx.audit.spec import ContainerSpec

    for document in yaml_documents(data) or []:
        if is_kind(document):
            for spec in specs_of(document, "input.yaml"):
                assert isinstance(spec, ContainerSpec)
                list(container_findings(spec))
