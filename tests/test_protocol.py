"""The sans-IO codec: yate-extmodule.md test vectors, literal lines per kind, property tests."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from yaypm import protocol as P
from yaypm.protocol import ProtocolError, escape, parse_line, unescape

# --------------------------------------------------------------------------------------------
# Test vectors 1-22 of yate-extmodule.md, literal lines
# --------------------------------------------------------------------------------------------


def test_vector_01_plain_engine_message():
    line = ("%%>message:0x7f4df5677950.798838360:1795366856:call.route::driver=dumb:id=dumb/1"
            ":caller=alice:called=ivr")
    rec = parse_line(line)
    assert rec == P.Message("0x7f4df5677950.798838360", 1795366856, "call.route", "",
                            (("driver", "dumb"), ("id", "dumb/1"), ("caller", "alice"),
                             ("called", "ivr")))
    assert rec.encode(engine_side=True) == line


def test_vector_02_colon_inside_value():
    rec = parse_line("%%>message:m1:0:x:rv:sip_uri=sip%zivr@127.0.0.1%z5070")
    assert rec.params == (("sip_uri", "sip:ivr@127.0.0.1:5070"),)
    assert escape("sip:ivr@127.0.0.1:5070") == "sip%zivr@127.0.0.1%z5070"


def test_vector_03_percent_sign():
    rec = parse_line("%%>message:m1:0:x.test:rv:c=50%%")
    assert rec.params == (("c", "50%"),)
    assert escape("50%") == "50%%"
    assert unescape("%%%%") == "%%"


@pytest.mark.parametrize("raw, wire", [
    ("line1\nline2", "line1%Jline2"),
    ("\r\n", "%M%J"),
    ("\t", "%I"),
    ("chans=0\r\n", "chans=0%M%J"),
])
def test_vector_04_newline_cr_tab(raw, wire):
    assert escape(raw) == wire
    assert unescape(wire) == raw


@pytest.mark.parametrize("raw, wire", [
    ("\x01", "%A"), ("\x1b", "%["), ("\x1c", "%\\"), ("\x1d", "%]"), ("\x1e", "%^"),
    ("\x1f", "%_"), ("\x7f", "\x7f"),
])
def test_vector_05_other_control_characters(raw, wire):
    assert escape(raw) == wire
    assert unescape(wire) == raw


def test_vector_06_equals_in_values():
    rec = parse_line("%%>message:m1:0:x.test::f==eq:g=a=b")
    assert rec.params == (("f", "=eq"), ("g", "a=b"))
    assert escape("a=b") == "a=b"
    assert P.Message("m1", 0, "x.test", "", (("g", "a=b"),)).encode() == \
        "%%>message:m1:0:x.test::g=a=b"


def test_vector_07_equals_in_key_engine_to_script_only():
    rec = parse_line("%%>message:m1:0:x.test::a%}b=c")
    assert rec.params == (("a=b", "c"),)
    assert rec.encode(engine_side=True) == "%%>message:m1:0:x.test::a%}b=c"
    with pytest.raises(ProtocolError):
        parse_line("%%>message:m1:0:x.test::a%}b=c", script_side=True)
    with pytest.raises(ProtocolError):          # a script can never send such a key
        rec.encode()


def test_vector_08_empty_value_and_empty_segment():
    rec = parse_line("%%>message:m7:0:x.test::a=1::e=:b=2")
    assert rec.params == (("a", "1"), ("e", ""), ("b", "2"))


def test_vector_09_no_parameters_and_empty_time():
    rec = parse_line("%%<message:m2:true:x.test:echo")
    assert rec == P.MessageAnswer("m2", True, "x.test", "echo", ())
    assert rec.encode(engine_side=True) == "%%<message:m2:true:x.test:echo"
    rec = parse_line("%%>message:m2::x.test:", script_side=True)
    assert rec == P.Message("m2", None, "x.test", "", ())
    assert rec.encode() == "%%>message:m2::x.test:"


def test_vector_10_utf8_passes_unchanged():
    raw = b"%%>message:m1:0:x:rv:u=\xc3\xa9\xe4\xb8\xad"
    rec = parse_line(raw.decode("utf-8", "surrogateescape"))
    assert rec.params == (("u", "é中"),)
    assert rec.encode().encode("utf-8", "surrogateescape") == raw


def test_vector_11_escaped_id():
    rec = parse_line("%%>message:m%z12:0:x.test::u=1", script_side=True)
    assert rec.id == "m:12"
    assert rec.encode() == "%%>message:m%z12:0:x.test::u=1"
    ans = parse_line("%%<message:m%z12:true:x.test:")
    assert ans.id == "m:12"


def test_vector_12_deleting_a_parameter_in_an_answer():
    line = "%%<message:0x1.2:false:x.renamed:rv2:a:b=changed:z=new"
    rec = parse_line(line, script_side=True)
    assert rec == P.MessageAnswer("0x1.2", False, "x.renamed", "rv2",
                                  (("a", None), ("b", "changed"), ("z", "new")))
    assert rec.encode() == line


@pytest.mark.parametrize("line, expected", [
    ("%%<message:0x1.2:true:", P.MessageAnswer("0x1.2", True, None)),
    ("%%<message:0x1.2:true::", P.MessageAnswer("0x1.2", True, "", "")),
    ("%%<message:0x1.2:yes::x", P.MessageAnswer("0x1.2", True, "", "x")),
    ("%%<message:0x1.2:t::x", P.MessageAnswer("0x1.2", True, "", "x")),
    ("%%<message:0x1.2: true::x", P.MessageAnswer("0x1.2", True, "", "x")),
])
def test_vector_13_minimal_answers_accepted(line, expected):
    assert parse_line(line, script_side=True) == expected


@pytest.mark.parametrize("line", [
    "%%<message:0x1.2:true",
    "%%<message:0x1.2:True::x",
    "%%<message:0x1.2:1::x",
    "%%<message:0x1.2:TRUE::x",
    "%%<message:0x1.2:true:newname",
])
def test_vector_13_unmatched_answers_refused(line):
    with pytest.raises(ProtocolError) as e:
        parse_line(line, script_side=True)
    assert e.value.line == line


def test_vector_13_minimal_answers_encode():
    assert P.MessageAnswer("0x1.2", True, None).encode() == "%%<message:0x1.2:true:"
    assert P.MessageAnswer("0x1.2", True, "", "").encode() == "%%<message:0x1.2:true::"
    assert P.MessageAnswer("0x1.2", False, None).encode() == "%%<message:0x1.2:false:"


def test_vector_14_watch_notification():
    line = "%%<message::false:chan.notify::targetid=prompt1:reason=replaced"
    rec = parse_line(line)
    assert rec == P.MessageAnswer("", False, "chan.notify", "",
                                  (("targetid", "prompt1"), ("reason", "replaced")))
    assert rec.is_notification
    assert rec.encode(engine_side=True) == line


def test_vector_15_install_with_escaped_filter_value():
    rec = parse_line("%%>install:20:call.route:called:1%z2", script_side=True)
    assert rec == P.Install(20, "call.route", "called", "1:2")
    assert rec.encode() == "%%>install:20:call.route:called:1%z2"
    assert parse_line("%%<install:20:call.route:true") == P.InstallReply(20, "call.route", True)


def test_vector_16_setlocal_is_not_unescaped():
    rec = parse_line("%%>setlocal:reason:a%zb", script_side=True)
    assert rec == P.SetLocal("reason", "a%zb")
    assert rec.encode() == "%%>setlocal:reason:a%zb"
    assert parse_line("%%<setlocal:reason:a%zb:true") == P.SetLocalReply("reason", "a%zb", True)


def test_vector_17_output_raw_debug_unescaped():
    assert parse_line("%%>output:  hello %z world  ") == P.Output("  hello %z world  ")
    assert P.Output("  hello %z world  ").encode() == "%%>output:  hello %z world  "
    assert parse_line("%%>debug:5:dbg %z text") == P.Debug(5, "dbg : text")
    assert P.Debug(5, "dbg : text").encode() == "%%>debug:5:dbg %z text"


@pytest.mark.parametrize("bad", ["%a", "%`", "%@", "%}", "%1", "% "])
def test_vector_18_invalid_escapes_from_a_script(bad):
    line = "%%>message:m9:0:x.test::bad=" + bad
    with pytest.raises(ProtocolError) as e:
        parse_line(line, script_side=True)
    assert e.value.line == line
    assert line in str(e.value)


def test_vector_19_raw_control_character():
    with pytest.raises(ProtocolError):
        parse_line("%%>message:m8:0:x.test::tab=a\tb", script_side=True)
    assert parse_line("%%>message:m8:0:x.test::tab=a%Ib").params == (("tab", "a\tb"),)


@pytest.mark.parametrize("line", [
    "%%>message:m3:123:x.test",
    "%%>message:m4:12x:x.test:",
    "%%>message:m6:0:x.test::=novalue",
])
def test_vector_20_missing_colon_bad_time_empty_key(line):
    with pytest.raises(ProtocolError):
        parse_line(line, script_side=True)


def test_vector_21_duplicate_keys_kept_in_order():
    # Yate collapses them when a script sends them; the codec keeps what is on the wire.
    rec = parse_line("%%>message:m13:0:x.test::dup=1:dup=2", script_side=True)
    assert rec.params == (("dup", "1"), ("dup", "2"))
    assert rec.encode() == "%%>message:m13:0:x.test::dup=1:dup=2"


def test_vector_22_line_terminators():
    # CR before LF is stripped; NUL can never be produced (the line would be cut there).
    assert parse_line("%%>connect:global\r", script_side=True) == P.Connect("global")
    with pytest.raises(ValueError):
        escape("a\x00b")
    with pytest.raises(ProtocolError):
        parse_line("%%>setlocal:timeout:\x00%%>setlocal:bufsize:", script_side=True)


# --------------------------------------------------------------------------------------------
# One literal line per kind, both directions
# --------------------------------------------------------------------------------------------

ENGINE_LINES = [   # what Yate sends (parse_line default)
    ("%%>message:0x7f0abc0d5c60.1526421777:1795369134:test.a::x=2",
     P.Message("0x7f0abc0d5c60.1526421777", 1795369134, "test.a", "", (("x", "2"),))),
    ("%%<message:p2:true:test.a:handled by probe:x=2",
     P.MessageAnswer("p2", True, "test.a", "handled by probe", (("x", "2"),))),
    ("%%<message::true:test.b:handled by probe:n=3",
     P.MessageAnswer("", True, "test.b", "handled by probe", (("n", "3"),))),
    ("%%<install:100:test.b:true", P.InstallReply(100, "test.b", True)),
    ("%%<install:10::false", P.InstallReply(10, "", False)),
    ("%%<uninstall:50:test.a:true", P.UninstallReply(50, "test.a", True)),
    ("%%<uninstall:0:nosuch:false", P.UninstallReply(0, "nosuch", False)),
    ("%%<watch:test.w:true", P.WatchReply("test.w", True)),
    ("%%<watch::true", P.WatchReply("", True)),
    ("%%<unwatch:test.w:false", P.UnwatchReply("test.w", False)),
    ("%%<setlocal:timeout:10000:true", P.SetLocalReply("timeout", "10000", True)),
    ("%%<setlocal:engine.nosuch::false", P.SetLocalReply("engine.nosuch", "", False)),
    ("%%<setlocal:engine.configpath:C:\\yate:true",
     P.SetLocalReply("engine.configpath", "C:\\yate", True)),
    ("%%<quit", P.QuitReply()),
    ("Error in: %%>setlocal:timeout", P.ErrorIn("%%>setlocal:timeout")),
    ("Error in: garbage", P.ErrorIn("garbage")),
]

SCRIPT_LINES = [   # what a script sends (parse_line(script_side=True))
    ("%%>message:p1:1795369134:test.a::x=1",
     P.Message("p1", 1795369134, "test.a", "", (("x", "1"),))),
    ("%%>message::0:test.a::fire=forget", P.Message("", 0, "test.a", "", (("fire", "forget"),))),
    ("%%<message:0x7f0abc0d5c60.631528390:true:test.mod:changed retval:added=yes:remove_me",
     P.MessageAnswer("0x7f0abc0d5c60.631528390", True, "test.mod", "changed retval",
                     (("added", "yes"), ("remove_me", None)))),
    ("%%<message:0x1:false:", P.MessageAnswer("0x1", False, None)),
    ("%%>install:50:test.a", P.Install(50, "test.a")),
    ("%%>install::test.b", P.Install(None, "test.b")),
    ("%%>install:60:test.c:foo:bar", P.Install(60, "test.c", "foo", "bar")),
    ("%%>install:70:test.d:foo", P.Install(70, "test.d", "foo")),
    ("%%>uninstall:test.a", P.Uninstall("test.a")),
    ("%%>watch:test.w", P.Watch("test.w")),
    ("%%>watch:", P.Watch("")),
    ("%%>unwatch:test.w", P.Unwatch("test.w")),
    ("%%>setlocal:trackparam:acceptance", P.SetLocal("trackparam", "acceptance")),
    ("%%>setlocal:timeout:", P.SetLocal("timeout", "")),
    ("%%>output:hello from probe: 100% raw %z text",
     P.Output("hello from probe: 100% raw %z text")),
    ("%%>debug:5:escaped%zdebug text", P.Debug(5, "escaped:debug text")),
    ("%%>connect:global", P.Connect("global")),
    ("%%>connect:global:someid:audio", P.Connect("global", "someid", "audio")),
    ("%%>quit", P.Quit()),
]


@pytest.mark.parametrize("line, record", ENGINE_LINES)
def test_engine_line_literal_bytes(line, record):
    assert parse_line(line) == record
    assert record.encode(engine_side=True).encode("utf-8") == line.encode("utf-8")


@pytest.mark.parametrize("line, record", SCRIPT_LINES)
def test_script_line_literal_bytes(line, record):
    assert parse_line(line, script_side=True) == record
    assert record.encode().encode("utf-8") == line.encode("utf-8")


def test_answer_with_params_needs_a_name():
    with pytest.raises(ProtocolError):
        P.MessageAnswer("0x1", True, None, "rv").encode()


@pytest.mark.parametrize("record", [
    P.Install(10, "a:b"), P.Install(10, "a\nb"), P.Watch("x:y"), P.Uninstall("x\r"),
    P.Unwatch("a:b"), P.SetLocal("a:b", "v"), P.SetLocal("", "v"), P.SetLocal("n", "v\n"),
    P.Output("two\nlines"), P.Connect("glo:bal"),
    P.Message("m1", 0, "x", "", (("", "v"),)), P.Message("m1", 0, "x", "", (("", None),)),
    P.Message("m1", 0, "x", "", (("k", "a\x00b"),)),
])
def test_raw_fields_refuse_what_would_break_the_line(record):
    with pytest.raises(ValueError):      # ProtocolError is a ValueError
        record.encode()


@pytest.mark.parametrize("line", [
    "garbage", "", "%%>message", "%%>message:", "%%>message:x1", "%%<message:nosuchid",
    "%%>install", "%%>watch", "%%>setlocal", "%%>setlocal:", "%%>setlocal:timeout",
    "%%>setlocal::x", "%%>output", "%%>debug", "%%>debug:text without level",
    "%%<install:x:y", "%%<install:10:name:maybe", "%%<watch", "%%<setlocal:x",
    "%%>message:m1:0:x.test::a=b%", "%%>message:x%10:0:test.x::", "%%>quitx",
])
def test_malformed_lines_raise_protocol_error_naming_the_line(line):
    with pytest.raises(ProtocolError) as e:
        parse_line(line, script_side=True)
    assert e.value.line in (line, line.rstrip("\r"))
    assert repr(line) in str(e.value) or e.value.line != line


def test_unescape_refuses_lone_percent_and_raw_controls():
    for bad in ["50%", "a\tb", "%a", "%@"]:
        with pytest.raises(ValueError):
            unescape(bad)
    assert unescape("a%}b", key=True) == "a=b"
    with pytest.raises(ValueError):
        unescape("a%}b")


def test_time_field_is_read_like_strtoul():
    assert parse_line("%%>message:m:0x10:x:").time == 16
    assert parse_line("%%>message:m:010:x:").time == 8
    with pytest.raises(ProtocolError):
        parse_line("%%>message:m:-1:x:")


def test_install_priority_is_read_like_strtol():
    assert parse_line("%%>install:abc:test.e", script_side=True).priority == 100
    assert parse_line("%%>install:0x10:test.e", script_side=True).priority == 16


# --------------------------------------------------------------------------------------------
# Property tests
# --------------------------------------------------------------------------------------------

# Any text but NUL (which Yate cannot carry): arbitrary unicode, control characters, and the
# surrogate escapes (U+DC80..U+DCFF) that stand for invalid UTF-8 bytes.
text = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=()),
               max_size=30) | st.binary(max_size=30).map(
    lambda b: b.replace(b"\x00", b"").decode("utf-8", "surrogateescape"))
wire_text = st.binary(max_size=30).map(
    lambda b: b.replace(b"\x00", b"").decode("utf-8", "surrogateescape"))
key = text.filter(lambda k: k != "" and "=" not in k)
value = text
params = st.lists(st.tuples(key, value), max_size=6).map(tuple)
answer_params = st.lists(st.tuples(key, st.none() | value), max_size=6).map(tuple)
times = st.none() | st.integers(min_value=0, max_value=2 ** 40)
raw_name = st.text(st.characters(blacklist_characters=":", min_codepoint=0x20), max_size=20)


@st.composite
def script_records(draw):
    kind = draw(st.sampled_from(["message", "answer", "minimal", "install", "setlocal",
                                 "watch", "unwatch", "uninstall", "debug", "output", "connect"]))
    if kind == "message":
        return P.Message(draw(text), draw(times), draw(text), draw(text), draw(answer_params))
    if kind == "answer":
        return P.MessageAnswer(draw(text), draw(st.booleans()), draw(text), draw(text),
                               draw(answer_params))
    if kind == "minimal":
        return P.MessageAnswer(draw(text), draw(st.booleans()), None)
    if kind == "install":
        fname = draw(st.none() | text)
        fvalue = draw(st.none() | text) if fname is not None else None
        return P.Install(draw(st.none() | st.integers(0, 10 ** 6)),
                         draw(raw_name.filter(bool)), fname, fvalue)
    if kind == "setlocal":
        return P.SetLocal(draw(raw_name.filter(bool)),
                          draw(st.text(st.characters(min_codepoint=0x20), max_size=20)))
    if kind in ("watch", "unwatch", "uninstall"):
        cls = {"watch": P.Watch, "unwatch": P.Unwatch, "uninstall": P.Uninstall}[kind]
        return cls(draw(raw_name))
    if kind == "debug":
        return P.Debug(draw(st.integers(0, 10)), draw(text))
    if kind == "output":
        return P.Output(draw(st.text(st.characters(min_codepoint=0x20), max_size=20)))
    ident = draw(st.none() | text)
    return P.Connect(draw(raw_name.filter(bool)), ident,
                     draw(st.none() | text) if ident is not None else None)


@settings(max_examples=400, deadline=None)
@given(script_records())
def test_script_records_round_trip(rec):
    line = rec.encode()
    assert parse_line(line, script_side=True) == rec
    assert parse_line(line) == rec
    assert "\n" not in line and "\r" not in line and "\x00" not in line


@settings(max_examples=300, deadline=None)
@given(text, times, text, text, st.lists(st.tuples(text.filter(bool), value), max_size=6))
def test_engine_messages_round_trip_with_any_key(ident, time, name, retvalue, ps):
    rec = P.Message(ident, time, name, retvalue, tuple(ps))
    line = rec.encode(engine_side=True)
    assert parse_line(line) == rec
    note = P.MessageAnswer("", True, name, retvalue, tuple(ps))
    assert parse_line(note.encode(engine_side=True)) == note


@settings(max_examples=300, deadline=None)
@given(wire_text, times, wire_text, wire_text,
       st.lists(st.tuples(wire_text.filter(lambda k: k != "" and "=" not in k), wire_text),
                max_size=5))
def test_bytes_round_trip_including_invalid_utf8(ident, time, name, retvalue, ps):
    rec = P.Message(ident, time, name, retvalue, tuple(ps))
    data = rec.encode().encode("utf-8", "surrogateescape")
    assert b"\n" not in data and b"\r" not in data and b"\x00" not in data
    assert parse_line(data.decode("utf-8", "surrogateescape")) == rec


@settings(max_examples=300, deadline=None)
@given(text, text, st.lists(st.tuples(key, value), max_size=6))
def test_values_never_add_a_field(ident, name, ps):
    """The raw ':' count is fixed by the structure: 4 + one per parameter."""
    line = P.Message(ident, 0, name, "", tuple(ps)).encode()
    assert line.count(":") == 4 + len(ps)
    ans = P.MessageAnswer(ident, True, name, "", tuple(ps)).encode()
    assert ans.count(":") == 4 + len(ps)


@given(text)
def test_escape_unescape_inverse(s):
    assert unescape(escape(s)) == s
    assert unescape(escape(s, "="), key=True) == s
    e = escape(s)
    assert ":" not in e and not any(c < " " for c in e)


@given(st.text(max_size=30).filter(lambda s: ":" not in s))     # a field: split on ':' already
def test_unescape_either_refuses_or_escape_restores_canonical(s):
    try:
        u = unescape(s)
    except ValueError:
        return
    assert escape(u) == s


@given(st.text(max_size=40))
def test_parse_line_never_crashes_with_anything_but_protocol_error(s):
    for side in (False, True):
        try:
            parse_line(s, script_side=side)
        except ProtocolError:
            pass


@pytest.mark.parametrize("line", ["%%<install:100:x:true", "%%<watch:x:true", "%%<quit",
                                  "%%<setlocal:a:b:true", "Error in: x", "%%<unwatch:x:true",
                                  "%%<uninstall:0:x:false"])
def test_reply_keywords_from_a_script_are_refused(line):
    """Yate answers 'Error in' to a script sending one of its replies (trace A3)."""
    with pytest.raises(ProtocolError):
        parse_line(line, script_side=True)
    parse_line(line)                      # what the engine sends


def _reference_message(line: str, script_side: bool):
    """A field-by-field decoder written from yate-extmodule.md §3/§5 (no fast paths)."""
    fields = line[11:].split(":")
    if len(fields) < 4:
        raise ValueError("short")
    ident, t, name, rv = (unescape(f) for f in (fields[0], fields[1], fields[2], fields[3]))
    params = []
    for seg in fields[4:]:
        if not seg:
            continue
        k, sep, v = seg.partition("=")
        k = unescape(k, key=not script_side)
        if not k:
            raise ValueError("empty key")
        params.append((k, unescape(v) if sep else None))
    return ident, t, name, rv, tuple(params)


@settings(max_examples=1000, deadline=None)
@given(st.text(st.sampled_from("%:=zAJ}@a1\t\udcc0\ud800é"), max_size=25), st.booleans())
def test_fast_decoder_agrees_with_the_reference(body, script_side):
    line = "%%>message:m:0:" + body
    try:
        expected = _reference_message(line, script_side)
    except ValueError:
        expected = None
    try:
        rec = parse_line(line, script_side=script_side)
        got = (rec.id, str(rec.time), rec.name, rec.retvalue, rec.params)
    except ProtocolError:
        got = None
    assert got == expected
