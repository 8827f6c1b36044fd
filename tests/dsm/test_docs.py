"""docs/dsm.md stays true: its script is the one the adapter tests run, its graph is drawn."""
from __future__ import annotations

import os
import re

from yaypm.dsm import check_script, parse_text

from yate_helpers import IVR

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def test_docs_script_is_the_tested_ivr_and_the_graph_is_committed():
    text = open(os.path.join(ROOT, "docs", "dsm.md"), encoding="utf-8").read()
    script = re.search(r"```dsm\n(.*?)```", text, re.S).group(1)
    assert script == IVR
    from yaypm.dsm.diagram import ModuleSet
    assert check_script(parse_text(script, "ivr.dsm"), ModuleSet(None)) == []
    svg = open(os.path.join(ROOT, "docs", "img", "dsm-example.svg"), encoding="utf-8").read()
    for state in ("START", "COLLECT", "CHECK", "GOODBYE", "END"):
        assert f"<title>{state}</title>" in svg
