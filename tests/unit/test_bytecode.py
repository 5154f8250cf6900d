"""scripts/bytecode.py on a small package of its own: what it compiles, that the interpreter runs it
instead of the sources, that it refuses another Python, and that the zip it writes is reproducible.
(The real package: tests/e2e/test_package_runs_as_lambda.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from typing import TYPE_CHECKING, Any

import pytest

from scripts import bytecode
from scripts.bytecode import BytecodeError, cached_name, ship_bytecode, stale_bytecode

if TYPE_CHECKING:
    from pathlib import Path

OURS = f"python{sys.version_info.major}.{sys.version_info.minor}"
TAG = sys.implementation.cache_tag
SOURCES = {
    "app.py": "import chalicelib.web\nimport dep\n",
    "chalicelib/__init__.py": "",
    "chalicelib/web.py": "ANSWER = 42\n",
    "chalicelib/sync/__init__.py": "",
    "chalicelib/sync/consumer.py": "import lazydep\n",  # imported on first use only, by a consumer
    "dep/__init__.py": "from dep import inner\n",
    "dep/inner.py": "X = 1\n",
    "lazydep.py": "",
    "unused/__init__.py": "raise RuntimeError('never imported')\n",
    "unused/data.json": "{}",
}
# What a Lambda runtime's interpreter would load from the package: all but `unused`.
IMPORTED = {"app.py", "chalicelib/__init__.py", "chalicelib/web.py", "chalicelib/sync/__init__.py",
            "chalicelib/sync/consumer.py", "dep/__init__.py", "dep/inner.py", "lazydep.py"}  # fmt: skip
# Reports every file under the task root the interpreter compiled from source while importing app and
# the consumer (the `compile` audit event: a bytecode import raises none).
RUN = """
import json, os, sys
task = os.path.realpath(sys.argv[1]) + os.sep
compiled = []
sys.addaudithook(lambda e, a: compiled.append(os.path.relpath(a[1], task))
                 if e == "compile" and isinstance(a[1], str) and os.path.isabs(a[1])
                 and os.path.realpath(a[1]).startswith(task) else None)
sys.path[:0] = [task, sys.argv[2]]
import app, chalicelib.sync.consumer
print(json.dumps({"compiled": compiled, "cached": app.__cached__, "answer": chalicelib.web.ANSWER}))
"""


def make_package(folder: Path, runtime: str = OURS, sources: dict[str, str] = SOURCES) -> Path:
    """A zip as `chalice package` writes it (entries in its own order, real timestamps), sam.json beside it."""
    folder.mkdir(parents=True)
    zip_path = folder / "deployment.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in reversed(sources):
            archive.writestr(name, sources[name])
    resources = {name: {"Type": "AWS::Serverless::Function", "Properties": {"Runtime": runtime}}
                 for name in ("APIHandler", "DeliverQueued")}  # fmt: skip
    (folder / "sam.json").write_text(json.dumps({"Resources": resources}))
    return zip_path


@pytest.fixture
def runtime_dir(tmp_path: Path) -> Path:
    """Stands for .venv/lambda-runtime (the step checks boto3 is there)."""
    (tmp_path / "runtime" / "boto3").mkdir(parents=True)
    (tmp_path / "runtime" / "boto3" / "__init__.py").write_text("")
    return tmp_path / "runtime"


def test_the_modules_the_init_and_the_consumers_import_are_compiled(tmp_path: Path, runtime_dir: Path):
    zip_path = make_package(tmp_path / "out")

    shipped = ship_bytecode(zip_path, runtime_dir)

    assert set(shipped.modules) == IMPORTED
    names = zipfile.ZipFile(zip_path).namelist()
    assert {n for n in names if n.endswith(".pyc")} == {cached_name(m) for m in IMPORTED}
    assert set(SOURCES) <= set(names)  # the sources stay (tracebacks, and any other Python)
    assert stale_bytecode(zip_path) == []
    assert shipped.bytes_after == zip_path.stat().st_size > shipped.bytes_before


def test_paths_relative_to_where_it_runs_as_make_package_gives_them(
    tmp_path: Path, runtime_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    make_package(tmp_path / "build" / "prod", sources={**SOURCES, "app.py": SOURCES["app.py"] + "import boto3\n"})
    monkeypatch.chdir(tmp_path)  # the runtime's boto3 is found from here, not from the unzipped package

    bytecode.main(["build/prod/deployment.zip", "--runtime-dir", "runtime"])

    assert stale_bytecode(tmp_path / "build" / "prod" / "deployment.zip") == []


def test_a_fresh_interpreter_runs_the_bytecode_not_the_sources(tmp_path: Path, runtime_dir: Path):
    zip_path = make_package(tmp_path / "out")
    ship_bytecode(zip_path, runtime_dir)
    task = tmp_path / "task"
    zipfile.ZipFile(zip_path).extractall(task)

    def run(root: Path) -> dict[str, Any]:
        done = subprocess.run([sys.executable, "-I", "-S", "-B", "-c", RUN, str(root), str(runtime_dir)],
                              capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    shipped = run(task)
    for pyc in task.rglob("*.pyc"):
        pyc.unlink()
    bare = run(task)

    assert shipped == {"compiled": [], "cached": str(task / cached_name("app.py")), "answer": 42}
    assert set(bare["compiled"]) == IMPORTED  # the control: the audit sees a compile when there is one


def test_the_zip_is_sorted_timeless_and_reproducible(tmp_path: Path, runtime_dir: Path):
    first, second = make_package(tmp_path / "a"), make_package(tmp_path / "b")

    ship_bytecode(first, runtime_dir)
    ship_bytecode(second, runtime_dir)
    once = first.read_bytes()
    ship_bytecode(first, runtime_dir)  # run again on its own output

    infos = zipfile.ZipFile(first).infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {i.date_time for i in infos} == {bytecode.FIXED_DATE_TIME}
    assert once == second.read_bytes() == first.read_bytes()


@pytest.mark.parametrize("runtime", ["python3.10", "python3.12", "python2.7"])
def test_another_python_than_the_runtime_is_refused(tmp_path: Path, runtime_dir: Path, runtime: str):
    if runtime == OURS:
        pytest.skip("this interpreter is that runtime")
    zip_path = make_package(tmp_path / "out", runtime=runtime)
    before = zip_path.read_bytes()

    with pytest.raises(BytecodeError, match=rf"this interpreter is {OURS} .* the package runs on {runtime}"):
        ship_bytecode(zip_path, runtime_dir)
    with pytest.raises(SystemExit, match=f"scripts.bytecode: this interpreter is {OURS}"):
        bytecode.main([str(zip_path), "--runtime-dir", str(runtime_dir)])
    assert zip_path.read_bytes() == before


def test_the_runtime_is_read_from_the_template_or_given(tmp_path: Path, runtime_dir: Path):
    zip_path = make_package(tmp_path / "out")
    (tmp_path / "out" / "sam.json").unlink()

    with pytest.raises(BytecodeError, match="--runtime"):
        ship_bytecode(zip_path, runtime_dir)
    assert ship_bytecode(zip_path, runtime_dir, runtime=OURS).modules
    with pytest.raises(BytecodeError, match=r"python3\.0"):
        ship_bytecode(zip_path, runtime_dir, runtime="python3.0")


def test_a_package_whose_init_cannot_import_is_refused(tmp_path: Path, runtime_dir: Path):
    zip_path = make_package(tmp_path / "out", sources={**SOURCES, "app.py": "import missing_requirement\n"})

    with pytest.raises(BytecodeError, match="No module named 'missing_requirement'"):
        ship_bytecode(zip_path, runtime_dir)


def test_bytecode_that_is_not_its_sources_is_found(tmp_path: Path, runtime_dir: Path):
    zip_path = make_package(tmp_path / "out")
    ship_bytecode(zip_path, runtime_dir)
    edited = tmp_path / "edited.zip"
    with zipfile.ZipFile(zip_path) as source, zipfile.ZipFile(edited, "w") as target:
        for info in source.infolist():
            data = b"ANSWER = 41\n" if info.filename == "chalicelib/web.py" else source.read(info)
            target.writestr(info, data)

    assert stale_bytecode(edited) == [cached_name("chalicelib/web.py")]
