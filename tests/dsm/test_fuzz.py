"""Property tests: random and truncated scripts never crash or hang the parser/checker."""
from __future__ import annotations

import glob
import os
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yaypm.dsm import DSMSyntaxError, check_script, parse_text
from yaypm.dsm.model import Script

from dsm_helpers import CORPUS, SEMS

_TEXTS = [open(p).read() for p in sorted(glob.glob(os.path.join(SEMS, "**", "*.dsm"), recursive=True))
          + sorted(glob.glob(os.path.join(CORPUS, "own", "*.dsm")))]

_ALPHABET = st.sampled_from(list("abcAB$#@()[]{};,=-/> \n\t\"'\\*<!01") +
                            ["state ", "initial ", "transition ", "enter", "exit", "if ", "else ",
                             "for ", "function ", "import(mod_dlg)", "->", "-->", "-/", " - ",
                             " / ", "not ", "exception", "test($a==1)", "key", "py(", "--", "#"])


def _parse_ok(text: str) -> None:
    t0 = time.monotonic()
    try:
        script = parse_text(text, "fuzz.dsm")
    except DSMSyntaxError as e:
        assert e.pos.line >= 1 and str(e)
    else:
        assert isinstance(script, Script)
        check_script(script)
    assert time.monotonic() - t0 < 2.0


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_ALPHABET, max_size=80).map("".join))
def test_random_token_soup(text):
    _parse_ok(text)


@settings(max_examples=300, deadline=2000)
@given(st.text(max_size=300))
def test_random_unicode(text):
    _parse_ok(text)


@settings(max_examples=200, deadline=2000)
@given(st.integers(min_value=0, max_value=len(_TEXTS) - 1), st.floats(min_value=0, max_value=1))
def test_truncated_corpus_scripts(i, frac):
    text = _TEXTS[i]
    _parse_ok(text[:int(len(text) * frac)])


@settings(max_examples=150, deadline=2000)
@given(st.integers(min_value=0, max_value=len(_TEXTS) - 1), st.integers(min_value=0),
       st.sampled_from(["{", "}", ";", "(", ")", '"', "'", "->", "\n"]))
def test_corpus_scripts_with_one_insertion(i, at, ins):
    text = _TEXTS[i]
    at = at % (len(text) + 1)
    _parse_ok(text[:at] + ins + text[at:])
