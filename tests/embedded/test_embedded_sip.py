"""The IVR example (route to a dumb channel) running embedded, driven by a real SIP call."""

from __future__ import annotations

import time

import pytest

from yaypm.testing.yate import SippCall, find_sipp

from embedded_helpers import APPS

pytestmark = pytest.mark.yate


def test_route_ivr_example_embedded_with_a_sipp_call(embedded_yate, tmp_path):
    if find_sipp() is None:
        pytest.skip("sipp not found: install the Debian package sip-tester (or set YAYPM_SIPP)")
    # route_ivr installs call.route at the default priority: ahead of regexroute (100)
    engine = embedded_yate({"ivr": APPS / "ivr_app.py"}, general={"priority": "50"})
    conn = engine.connect()
    # route_ivr: the call.route wait; answer_dumb: the call.execute watch
    engine.wait_handlers(conn, 2)
    start = engine.log_size()
    call = SippCall(engine.sip_port, "ivr", tmp_path / "sipp", scenario="uac_hangup",
                    timeout=20)
    call.start()
    out = call.wait(25)
    assert out.answered, str(out)
    assert out.bye_sent
    # the example's own log lines, from inside Yate
    deadline = time.monotonic() + 5
    wanted = ["connected to dumb/", "dumb status: name=dumb", "hung up"]
    while not all(w in engine.log_text(start) for w in wanted):
        assert time.monotonic() < deadline, engine.log_text(start)[-4000:]
        time.sleep(0.05)
    log = engine.log_text(start)
    assert "Traceback" not in log, log[-4000:]
    st = engine.host_status(conn)
    assert st["pending"] == "0" and st["timeouts"] == "0", st
