"""Ship the deployment package's bytecode: rewrite ``deployment.zip`` (what `chalice package` wrote) with
``__pycache__/*.cpython-3XX.pyc`` for the modules a Lambda init imports. `make package` runs it:

    python -m scripts.bytecode build/prod/deployment.zip --runtime-dir .venv/lambda-runtime

Lambda's ``/var/task`` is read-only, so without bytecode in the zip every cold start compiles ``app.py``,
``chalicelib`` and the requirements from source (bench/README.md: about half of the import time).

- **Which modules**: the package's files that a fresh interpreter compiles or loads when it imports
  ``app`` (every handler's module) and every ``chalicelib`` module (what the routes and consumers
  import on first use) — ``python -I -S -B``, its path only the unzipped package, the Lambda runtime's
  boto3/botocore (``--runtime-dir``) and the standard library, as Lambda runs the package
  (tests/e2e/lambda_runtime.py). A module whose import fails (an optional dependency's ``try: import``)
  is compiled all the same, so it is counted. Compiling every module of the requirements would put the
  zip over its 3 MB budget for modules no function imports.
- **Compiled from the zip's own sources**, by this interpreter, which must be the runtime's Python
  (the same minor version as the functions' ``Runtime`` in the ``sam.json`` beside the zip, or
  ``--runtime``): a ``.pyc`` is read only by the Python that wrote its magic number; any other would
  ignore it — or, for a different runtime, not be what the package was built for. Refused otherwise.
- **Unchecked hash** (:data:`py_compile.PycInvalidationMode.UNCHECKED_HASH`): the zip's timestamps say
  nothing about the sources, so the ``.pyc`` carries a hash of its source instead
  (:func:`importlib.util.source_hash`), and the interpreter loads it without checking the source. It is
  correct because the step compiles the very bytes it ships beside it, in the same zip, every time the
  package is built (:func:`stale_bytecode` finds any ``.pyc`` in a zip whose hash is not its source's).
- **Deterministic**: entries sorted by name, one fixed timestamp, the same permissions, deflate at one
  level, ``co_filename`` the path Lambda runs it from (``/var/task/...``), not a temporary folder; any
  bytecode already in the zip is replaced, so the step can run twice.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import py_compile
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

TASK_ROOT = PurePosixPath("/var/task")  # where Lambda unzips the package: the compiled files' co_filename
FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can hold
COMPRESS_LEVEL = 9  # deflate entries as tightly as zlib can (a few KB under the budget, same bytes every build)
FILE_MODE = 0o644 << 16  # a new .pyc's Unix permissions (external_attr), as chalice writes files
PROBE_TIMEOUT_SECONDS = 120
# A fresh interpreter that imports what a Lambda init imports, then names the package's files it compiled
# (the `compile` audit event: also those whose import then failed, as a try/except ImportError for an
# optional dependency does) or loaded: argv = task root, runtime dir, module names. Standard library only.
PROBE = """
import importlib, json, os, sys
task_root, runtime_dir, names = sys.argv[1], sys.argv[2], sys.argv[3:]
files = set()
def compiled(event, args):
    if event == "compile" and isinstance(args[1], str) and os.path.isabs(args[1]):
        files.add(os.path.realpath(args[1]))
sys.addaudithook(compiled)
sys.path[:0] = [task_root, runtime_dir]
for name in names:
    importlib.import_module(name)
files |= {os.path.realpath(f) for m in list(sys.modules.values())
          if isinstance(f := getattr(m, "__file__", None), str) and f.endswith(".py")}
root = os.path.realpath(task_root) + os.sep
print(json.dumps(sorted(os.path.relpath(f, root) for f in files if f.startswith(root) and f.endswith(".py"))))
"""


class BytecodeError(RuntimeError):
    """The package cannot be given bytecode the runtime would use."""


@dataclass(frozen=True)
class Shipped:
    modules: tuple[str, ...]  # the sources compiled, as paths in the zip
    bytes_before: int
    bytes_after: int


def runtime_of_template(template: Path) -> str:
    """The one Lambda runtime (``python3.11``) of every function in a SAM template."""
    resources = json.loads(template.read_text())["Resources"].values()
    runtimes = {str(r["Properties"]["Runtime"]) for r in resources if "Runtime" in r.get("Properties", {})}
    if len(runtimes) != 1:
        raise BytecodeError(f"{template}: expected one Lambda runtime for every function, found {sorted(runtimes)}")
    return runtimes.pop()


def check_interpreter(runtime: str, version: tuple[int, int] = sys.version_info[:2]) -> None:
    """Refuse unless ``version`` (this interpreter's) is the runtime's Python."""
    ours = f"python{version[0]}.{version[1]}"
    if runtime != ours:
        raise BytecodeError(
            f"this interpreter is {ours} ({sys.executable}) but the package runs on {runtime}: bytecode it "
            f"compiled would be ignored there. Run the step with the runtime's Python (a .venv made from it)."
        )


def cached_name(source: str) -> str:
    """``chalicelib/web.py`` → ``chalicelib/__pycache__/web.cpython-311.pyc`` (this interpreter's tag)."""
    path = PurePosixPath(source)
    return str(path.parent / "__pycache__" / f"{path.stem}.{sys.implementation.cache_tag}.pyc")


def is_bytecode(name: str) -> bool:
    path = PurePosixPath(name)
    return path.suffix == ".pyc" and len(path.parts) > 1 and path.parts[-2] == "__pycache__"


def init_modules(task_root: Path, runtime_dir: Path, names: list[str]) -> list[str]:
    """The package's ``.py`` files a fresh interpreter loads when it imports ``names``, as zip paths."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "LAMBDA_TASK_ROOT": str(task_root),
    }
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", PROBE, str(task_root), str(runtime_dir), *names],
        cwd=task_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=PROBE_TIMEOUT_SECONDS,
        check=False,
    )
    if done.returncode != 0:
        raise BytecodeError(f"importing the package's modules failed (as a Lambda init would):\n{done.stderr}")
    files: list[str] = json.loads(done.stdout)
    return [PurePosixPath(*Path(f).parts).as_posix() for f in files]


def handler_modules(names: list[str]) -> list[str]:
    """``app`` and every ``chalicelib`` module in the zip, as dotted names."""
    modules = ["app"]
    for name in sorted(names):
        path = PurePosixPath(name)
        if path.parts[0] == "chalicelib" and path.suffix == ".py" and "__pycache__" not in path.parts:
            dotted = path.with_suffix("").parts
            modules.append(".".join(dotted[:-1] if dotted[-1] == "__init__" else dotted))
    return modules


def compile_source(task_root: Path, source: str) -> bytes:
    """The unchecked-hash ``.pyc`` of ``task_root/source``, as Lambda would load it from /var/task."""
    with tempfile.TemporaryDirectory(prefix="pyc-") as out:
        target = Path(out) / "module.pyc"
        py_compile.compile(
            str(task_root / source),
            cfile=str(target),
            dfile=str(TASK_ROOT / source),
            doraise=True,
            optimize=0,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
        return target.read_bytes()


def stale_bytecode(zip_path: Path) -> list[str]:
    """The ``.pyc`` in the zip that are not this interpreter's hash-based bytecode of the source beside them."""
    stale = []
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
        for name in sorted(n for n in names if n.endswith(".pyc")):
            pyc = PurePosixPath(name)
            source = str(pyc.parent.parent / (pyc.name.split(".")[0] + ".py"))
            data = archive.read(name)
            flags = int.from_bytes(data[4:8], "little")
            ok = (
                source in names
                and data[:4] == importlib.util.MAGIC_NUMBER
                and flags & 0b1 == 1  # hash-based
                and data[8:16] == importlib.util.source_hash(archive.read(source))
            )
            if not ok:
                stale.append(name)
    return stale


def ship_bytecode(zip_path: Path, runtime_dir: Path, runtime: str | None = None) -> Shipped:
    """Rewrite ``zip_path`` in place with the bytecode of the modules a Lambda init imports."""
    template = zip_path.with_name("sam.json")
    if runtime is None:
        if not template.exists():
            raise BytecodeError(f"no {template.name} beside {zip_path}: name the Lambda runtime with --runtime")
        runtime = runtime_of_template(template)
    check_interpreter(runtime)
    runtime_dir = runtime_dir.resolve()  # the probe runs in the unzipped package: a relative path would miss
    if not (runtime_dir / "boto3").is_dir():
        raise BytecodeError(f"{runtime_dir} lacks the Lambda runtime's boto3: run `make install`")
    bytes_before = zip_path.stat().st_size
    with zipfile.ZipFile(zip_path) as archive:  # any bytecode already there is replaced, none kept
        entries = {i.filename: (i, archive.read(i)) for i in archive.infolist() if not is_bytecode(i.filename)}
    with tempfile.TemporaryDirectory(prefix="bytecode-") as tmp:
        task_root = Path(tmp) / "task"
        for name, (info, data) in entries.items():
            if not info.is_dir():
                (task_root / name).parent.mkdir(parents=True, exist_ok=True)
                (task_root / name).write_bytes(data)
        sources = init_modules(task_root, runtime_dir, handler_modules(list(entries)))
        compiled = {cached_name(source): compile_source(task_root, source) for source in sources}
    rewritten = zip_path.with_name(zip_path.name + ".tmp")
    with zipfile.ZipFile(rewritten, "w") as out:
        for name in sorted(set(entries) | set(compiled)):
            info = zipfile.ZipInfo(name, FIXED_DATE_TIME)
            info.create_system = 3  # Unix, so external_attr's permissions apply
            if name in compiled:
                info.external_attr, info.compress_type, data = FILE_MODE, zipfile.ZIP_DEFLATED, compiled[name]
            else:
                original, data = entries[name]
                info.external_attr, info.compress_type = original.external_attr, original.compress_type
            out.writestr(info, data, compresslevel=COMPRESS_LEVEL)
    os.replace(rewritten, zip_path)
    return Shipped(tuple(sources), bytes_before, zip_path.stat().st_size)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.bytecode", description=__doc__.split("\n\n")[0])
    parser.add_argument("zip", type=Path, help="the deployment.zip `chalice package` wrote (rewritten in place)")
    parser.add_argument("--runtime-dir", type=Path, required=True, help="the Lambda runtime's boto3/botocore")
    parser.add_argument("--runtime", help="the functions' Lambda runtime (default: from sam.json beside the zip)")
    args = parser.parse_args(argv)
    try:
        shipped = ship_bytecode(args.zip, args.runtime_dir, args.runtime)
    except BytecodeError as exc:
        sys.exit(f"scripts.bytecode: {exc}")
    print(
        f"{args.zip}: bytecode for {len(shipped.modules)} modules ({sys.implementation.cache_tag}, unchecked hash); "
        f"{shipped.bytes_before / 1e6:.2f} → {shipped.bytes_after / 1e6:.2f} MB"
    )


if __name__ == "__main__":
    main()
