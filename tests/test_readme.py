"""The README's examples run: each ```python block is executed, the menu apps on the simulator.

A README that shows code which does not work is worse than none; this keeps them honest.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _blocks() -> list:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def _namespace(code: str) -> dict:
    ns: dict = {"__name__": "readme_example"}
    exec(compile(code, str(README), "exec"), ns)
    return ns


def test_readme_has_the_examples():
    assert len(_blocks()) >= 4


def test_yaypm_wiki_style_example_compiles():
    code = _blocks()[0].replace("reactor.run()", "")
    code = code.replace('reactor.connectTCP("127.0.0.1", 5039,', 'factory = (')
    ns = _namespace(code)
    assert callable(ns["start"])


@pytest.mark.parametrize("index", [1, 2], ids=["async", "generator"])
def test_menu_examples_run_on_the_simulator(sim, index):
    app = _namespace(_blocks()[index])
    test = _namespace(_blocks()[3])
    test["start"] = app["start"]
    test["test_menu_says_the_choice_back"].__globals__["start"] = app["start"]
    test["test_menu_says_the_choice_back"](sim)


def test_readme_dsm_script_passes_the_checker(tmp_path):
    from yaypm.cli import main
    script = re.findall(r"```dsm\n(.*?)```", README.read_text(encoding="utf-8"), re.S)[0]
    path = tmp_path / "ivr.dsm"
    path.write_text(script)
    assert main(["dsm", "check", str(path)]) == 0
    path.write_text(script.replace("-> COLLECT;", "-> NOWHERE;", 1))
    # An undefined target state is a warning in SEMS (dsm-language.md §1.5), an error if strict.
    assert main(["dsm", "check", "--strict", "-q", str(path)]) != 0
