"""An installed (non-editable) yaypm works.

The wheel is built from a copy of this source tree (``pip wheel``, as a user would; the copy
keeps the checkout's ``build/`` and egg-info out of it) and must carry every data file the
code reads: the DSM grammar, prompts, the example script, quizconnect's schemas and DSM bundle,
and the real-engine harness's Yate configuration templates, sipp scenarios and the embedded
module's source (``yaypm/_data/``, see ``yaypm.resources``).  Installed into a fresh venv, the
``yaypm`` command runs and the data is found inside the installed package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_NOT_SOURCE = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__",
                                     ".hypothesis", ".mypy_cache", ".pytest_cache", "*.pyc")

pytestmark = pytest.mark.skipif(not (ROOT / "setup.py").is_file(),
                                reason="needs the source tree (setup.py)")


def _run(cmd: list[str], cwd: Path, timeout: float = 120.0) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("packaging")
    src = base / "src"
    shutil.copytree(ROOT, src, ignore=_NOT_SOURCE)
    shutil.rmtree(src / "embedded" / "build", ignore_errors=True)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(base / "dist"),
          str(src)], cwd=base)
    [whl] = (base / "dist").glob("yaypm-*.whl")
    return whl


def _source_files(folder: str, pattern: str) -> list[str]:
    return sorted(p.relative_to(ROOT / folder).as_posix() for p in (ROOT / folder).glob(pattern)
                  if p.is_file())


def test_the_wheel_carries_the_data_files(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    needed = ["yaypm/py.typed", "yaypm/dsm/dsm.lark", "yaypm/examples/ivr.dsm",
              "yaypm/_data/embedded/yaypmhost.cpp", "yaypm/_data/yate_conf/yate.conf",
              "yaypm/_data/sipp/uac_dtmf.xml"]
    needed += [f"yaypm/prompts/{n}" for n in _source_files("yaypm/prompts", "*.au")]
    needed += [f"yaypm/apps/quizconnect/{n}" for n in _source_files("yaypm/apps/quizconnect",
                                                                     "schema.*.sql")]
    needed += [f"yaypm/apps/quizconnect/dsm/{n}"
               for n in _source_files("yaypm/apps/quizconnect/dsm", "*")]
    # the harness's folders, whole (setup.py's RESOURCES)
    needed += [f"yaypm/_data/yate_conf/{n}" for n in _source_files("yate-conf", "**/*")]
    needed += [f"yaypm/_data/sipp/{n}" for n in _source_files("tests/sipp", "**/*")]
    assert len(needed) > 60
    assert [n for n in needed if n not in names] == []
    # and nothing else of the tests, nor a build left-over
    assert not [n for n in names if n.startswith("tests/") or "/build/" in n
                or n.endswith((".pyc", ".so", ".yate"))]


CHECKS = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    import yaypm
    here = Path(yaypm.__file__).resolve().parent
    assert str(here).startswith(sys.prefix), (here, sys.prefix)     # the venv's copy

    from yaypm.resources import resource_path
    from yaypm.embedded_cli import module_source
    from yaypm.testing.yate import YateEngine, _scenario_path
    for name in ("yate_conf", "sipp", "embedded"):
        assert resource_path(name).parent == here / "_data", resource_path(name)
    assert module_source().is_file()
    engine = YateEngine("/nonexistent", Path(os.getcwd()) / "run")
    assert (engine.templates / "yate.conf").is_file(), engine.templates
    assert _scenario_path("uac_dtmf").is_file()

    from yaypm.dsm import Engine
    from yaypm.examples import example_path
    from yaypm.prompts import prompt
    with open(example_path("ivr.dsm"), encoding="utf-8") as f:
        Engine.from_scripts({"ivr": f.read()})
    assert os.path.isfile(prompt("menu"))
    from yaypm.apps.quizconnect.store import schema_sql
    from yaypm.apps.quizconnect.dsm_runner import load_scripts
    assert "CREATE TABLE" in schema_sql("sqlite").upper() and len(load_scripts()) == 2
    print("installed copy ok")
""")


def test_installed_into_a_fresh_venv_the_command_runs(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    # --no-deps/--no-index: Twisted and friends come from the system site-packages;
    # --force-reinstall: a yaypm there (an editable checkout) must not count as installed.
    _run([str(python), "-m", "pip", "install", "-q", "--no-index", "--no-deps",
          "--force-reinstall", str(wheel)], cwd=tmp_path)
    assert "usage: yaypm" in _run([str(venv / "bin" / "yaypm"), "--help"], cwd=tmp_path)
    out = _run([str(venv / "bin" / "yaypm"), "example"], cwd=tmp_path)
    assert out.rstrip().endswith("example finished: call routed to dumb/, prompt played, "
                                 "hung up")
    assert _run([str(python), "-c", CHECKS], cwd=tmp_path).strip() == "installed copy ok"
    example = _run([str(python), "-c", "from yaypm.examples import example_path; "
                                       "print(example_path('ivr.dsm'))"], cwd=tmp_path).strip()
    _run([str(venv / "bin" / "yaypm"), "dsm", "check", example], cwd=tmp_path)


def test_resources_prefer_the_packaged_copy(tmp_path: Path, monkeypatch) -> None:
    import yaypm
    import yaypm.resources as resources
    from yaypm import embedded_cli
    checkout = Path(yaypm.__file__).resolve().parents[1]
    if not resources._PACKAGED.is_dir():                 # run from a checkout (editable)
        assert resources.resource_path("sipp") == checkout / "tests" / "sipp"
    packaged = tmp_path / "_data"
    (packaged / "sipp").mkdir(parents=True)
    monkeypatch.setattr(resources, "_PACKAGED", packaged)
    assert resources.resource_path("sipp") == packaged / "sipp"
    assert resources.resource_path("embedded") == checkout / "embedded"   # not packaged
    with pytest.raises(KeyError):
        resources.resource_path("nothing")
    # build-module writes beside a checkout's source, never into an installed package
    monkeypatch.setenv("YAYPM_CACHE", str(tmp_path / "cache"))
    assert embedded_cli._default_output(packaged / "embedded" / "yaypmhost.cpp") == \
        tmp_path / "cache" / "yaypmhost-build"
    assert embedded_cli._default_output(checkout / "embedded" / "yaypmhost.cpp") == \
        checkout / "embedded" / "build"
