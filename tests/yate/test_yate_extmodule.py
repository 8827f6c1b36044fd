"""The extmodule protocol against a real Yate, over raw sockets.

Each test states a behaviour recorded in ../shared/traces (A0-A2) and checks it on the
engine the suite runs against, byte for byte where the line does not depend on the run.
These are the ground truth the codec, dispatcher and simulator are measured by.
"""

from __future__ import annotations

import re

import pytest

from yaypm.testing.yate import message_is

pytestmark = pytest.mark.yate

VERSION = re.compile(r"%%<setlocal:engine\.version:\d+\.\d+\.\d+:true")


# --- connecting (trace A0) -------------------------------------------------------------

def test_roleless_listener_accepts_connect_global(yate_connect):
    conn = yate_connect(role="global")
    assert VERSION.fullmatch(conn.setlocal("engine.version"))


def test_roleless_listener_ignores_connect_id_and_type(yate_connect):
    conn = yate_connect(role="global:someid:audio")
    assert VERSION.fullmatch(conn.setlocal("engine.version"))


def test_global_listener_answers_connect_with_error_and_stays_usable(yate_connect):
    conn = yate_connect()
    conn.send_line("%%>connect:global")
    assert conn.read_line() == "Error in: %%>connect:global"
    assert VERSION.fullmatch(conn.setlocal("engine.version"))


def test_roleless_listener_closes_silently_without_connect_first(yate):
    with yate.open(yate.connect_port) as conn:
        conn.send_line("%%>setlocal:engine.version:")
        assert conn.expect_closed() == []


def test_roleless_listener_closes_silently_on_unknown_role(yate):
    with yate.open(yate.connect_port) as conn:
        conn.send_line("%%>connect:bogus")
        assert conn.expect_closed() == []


def test_channel_role_without_a_call_has_no_id(yate_connect):
    conn = yate_connect(role="channel")
    assert conn.setlocal("id") == "%%<setlocal:id::false"
    assert VERSION.fullmatch(conn.setlocal("engine.version"))


def test_quit_is_answered_then_closed(yate_connect):
    conn = yate_connect()
    conn.send_line("%%>quit")
    assert conn.read_line() == "%%<quit"
    assert conn.expect_closed() == []


# --- setlocal (trace A1) ---------------------------------------------------------------

@pytest.mark.parametrize("sent, reply", [
    ("%%>setlocal:id:myid", "%%<setlocal:id:myid:false"),
    ("%%>setlocal:disconnected:true", "%%<setlocal:disconnected:true:false"),
    ("%%>setlocal:trackparam:acceptance", "%%<setlocal:trackparam:acceptance:true"),
    ("%%>setlocal:timeout:", "%%<setlocal:timeout:10000:true"),
    ("%%>setlocal:timeout:2500", "%%<setlocal:timeout:2500:true"),
    ("%%>setlocal:bufsize:10", "%%<setlocal:bufsize:2048:true"),
    ("%%>setlocal:bufsize:999999999", "%%<setlocal:bufsize:65536:true"),
    ("%%>setlocal:maxqueue:", "%%<setlocal:maxqueue:1000:true"),
    ("%%>setlocal:reenter:true", "%%<setlocal:reenter:true:true"),
    ("%%>setlocal:timebomb:maybe", "%%<setlocal:timebomb:false:true"),
    ("%%>setlocal:restart:true", "%%<setlocal:restart:false:true"),
    ("%%>setlocal:setdata:", "%%<setlocal:setdata:true:true"),
    ("%%>setlocal:engine.nosuch:", "%%<setlocal:engine.nosuch::false"),
    ("%%>setlocal:config.general.modload:", "%%<setlocal:config.general.modload:disable:true"),
    ("%%>setlocal:config.modules.extmodule.yate:", "%%<setlocal:config.modules.extmodule.yate:yes:true"),
    ("%%>setlocal:loaded.extmodule:", "%%<setlocal:loaded.extmodule:true:true"),
    ("%%>setlocal:loaded.ysipchan:", "%%<setlocal:loaded.ysipchan:true:true"),
    ("%%>setlocal:loaded.dumb:", "%%<setlocal:loaded.dumb:false:true"),
    ("%%>setlocal:nosuchparam:value", "%%<setlocal:nosuchparam:value:false"),
    ("%%>setlocal:reason:a%zb", "%%<setlocal:reason:a%zb:true"),  # setlocal is not unescaped
    ("%%>setlocal:timeout", "Error in: %%>setlocal:timeout"),
])
def test_setlocal_reply(yate_connect, sent, reply):
    conn = yate_connect()
    conn.send_line(sent)
    assert conn.read_line() == reply


def test_setlocal_engine_paths_are_the_run_folders(yate, yate_connect):
    conn = yate_connect()
    assert conn.setlocal("engine.configpath") == f"%%<setlocal:engine.configpath:{yate.conf_dir}:true"
    assert conn.setlocal("engine.logfile") == f"%%<setlocal:engine.logfile:{yate.log_path}:true"


# --- install, watch, dispatch (trace A2) ------------------------------------------------

def test_install_replies_with_priority(yate_connect):
    conn = yate_connect()
    assert conn.install("test.a", 50) == "%%<install:50:test.a:true"
    assert conn.install("test.b") == "%%<install:100:test.b:true"
    assert conn.install("test.a", 40) == "%%<install:40:test.a:false"
    assert conn.uninstall("test.a") == "%%<uninstall:50:test.a:true"
    assert conn.uninstall("test.a") == "%%<uninstall:0:test.a:false"


def test_handler_with_filter_gets_only_matching_messages(yate_connect):
    handler, script = yate_connect(), yate_connect(role="global")
    assert handler.install("test.c", 60, "foo", "bar") == "%%<install:60:test.c:true"

    mid = script.message("test.c", {"foo": "bar"})
    asked = handler.expect(message_is("test.c", "handle"))
    assert re.fullmatch(r"%%>message:0x[0-9a-f]+\.\d+:\d+:test\.c::foo=bar", asked)
    handler.answer(asked, True, "handled by probe", {"added": "yes"})
    assert script.expect(f"%%<message:{mid}:") == \
        f"%%<message:{mid}:true:test.c:handled by probe:foo=bar:added=yes"

    assert script.dispatch("test.c", {"foo": "baz"}).endswith(":false:test.c::foo=baz")
    assert handler.backlog == [] and handler.received == [
        "%%<install:60:test.c:true", asked]


def test_handlers_run_in_priority_order_until_one_handles(yate_connect):
    early, late, script = yate_connect(), yate_connect(), yate_connect()
    assert early.install("test.order", 40) == "%%<install:40:test.order:true"
    assert late.install("test.order", 60) == "%%<install:60:test.order:true"

    mid = script.message("test.order", {"step": "0"})
    first = early.expect(message_is("test.order", "handle"))
    early.answer(first, False, "", {"step": "1"})        # not handled: goes on, changed
    second = late.expect(message_is("test.order", "handle"))
    assert second.params == {"step": "1"}
    late.answer(second, True, "late")
    assert script.expect(f"%%<message:{mid}:") == f"%%<message:{mid}:true:test.order:late:step=1"


def test_own_messages_skip_own_handler_unless_reenter(yate_connect):
    conn = yate_connect()
    conn.install("test.self", 50)
    assert conn.dispatch("test.self", {"x": "1"}).endswith(":false:test.self::x=1")
    assert conn.setlocal("reenter", "true") == "%%<setlocal:reenter:true:true"
    mid = conn.message("test.self", {"x": "2"})
    asked = conn.expect(message_is("test.self", "handle"))
    conn.answer(asked, True, "mine")
    assert conn.expect(f"%%<message:{mid}:") == f"%%<message:{mid}:true:test.self:mine:x=2"


def test_watcher_is_notified_after_dispatch(yate_connect):
    watcher, script = yate_connect(), yate_connect()
    assert watcher.watch("test.w") == "%%<watch:test.w:true"
    assert watcher.watch("test.w") == "%%<watch:test.w:false"
    mid = script.message("test.w", {"n": "1"})
    assert script.expect(f"%%<message:{mid}:") == f"%%<message:{mid}:false:test.w::n=1"
    assert watcher.expect("%%<message::") == "%%<message::false:test.w::n=1"
    assert watcher.unwatch("test.w") == "%%<unwatch:test.w:true"


def test_escaping_survives_an_engine_round_trip(yate_connect):
    handler, script = yate_connect(), yate_connect()
    handler.install("test.esc", 50)
    line = ("%%>message:e1:0:test.esc:r%zv%%:colon=a%zb:pct=100%%:eq=x=y:nl=l1%Jl2:tab=a%Ib:"
            "utf8=héllo ☺:empty=")
    script.send_line(line)
    asked = handler.expect(message_is("test.esc", "handle"))
    assert asked.split(":", 3)[3] == line.split(":", 3)[3]
    assert asked.params["colon"] == "a:b" and asked.params["nl"] == "l1\nl2"
    handler.answer(asked, True, "ok")
    assert script.expect("%%<message:e1:") == (
        "%%<message:e1:true:test.esc:ok:colon=a%zb:pct=100%%:eq=x=y:nl=l1%Jl2:tab=a%Ib:"
        "utf8=héllo ☺:empty=")


def test_invalid_escape_is_rejected(yate_connect):
    conn = yate_connect()
    conn.send_line("%%>message:m9:0:x.test::bad=%a")
    assert conn.read_line() == "Error in: %%>message:m9:0:x.test::bad=%a"


# --- messages answered by Yate's modules ------------------------------------------------

def test_engine_status_is_answered_by_extmodule(yate_connect):
    answer = yate_connect().dispatch("engine.status", {"module": "extmodule"})
    assert answer.processed is True
    assert re.fullmatch(r"name=extmodule,type=misc;scripts=\d+,chans=0\r\n", answer.retvalue)
    # the same modules, in the same order, as the recording harness (trace A2)
    assert answer.params["handlers"] == (
        "engine:90,rex_debug:100,callfork:110,tone:110,yrtp:110,dumb:110,regexroute:110,"
        "wave:110,sip:110,conf:110,pbx:110,extmodule:110")


@pytest.mark.parametrize("called, retvalue, error", [
    ("999", "-", "noroute"),        # no script claimed it: SIP 404
    ("busy", "-", "busy"),
    ("tone-ring", "tone/ring", None),
])
def test_call_route_falls_back_to_regexroute(yate_connect, called, retvalue, error):
    answer = yate_connect().dispatch("call.route", {"called": called, "caller": "t"})
    assert answer.processed is True and answer.retvalue == retvalue
    assert answer.params.get("error") == error
    assert answer.params["handlers"] == "regexroute:100"


def test_script_route_wins_over_regexroute(yate_connect):
    router, script = yate_connect(), yate_connect()
    assert router.install("call.route", 50, "called", "5555") == "%%<install:50:call.route:true"
    mid = script.message("call.route", {"called": "5555", "caller": "t"})
    asked = router.expect(message_is("call.route", "handle", called="5555"))
    router.answer(asked, True, "dumb/")
    assert script.expect(f"%%<message:{mid}:") == \
        f"%%<message:{mid}:true:call.route:dumb/:called=5555:caller=t"
