"""Playlist on the simulator: order, front insertion, missing files, flush, held start."""

from __future__ import annotations

from yaypm.ivr import Playlist
from yaypm.prompts import prompt


def play(name):
    return "wave/play/" + prompt(name)


def test_playlist_order_front_errors_and_empty_event(sim, apps):
    events = []

    async def app(leg):
        await leg.answer()
        pl = Playlist(leg, on_empty=lambda: events.append("empty"),
                      on_error=lambda f: events.append(type(f.value).__name__), active=False)
        pl.enqueue(prompt("one"))
        pl.enqueue("/missing.au")
        pl.enqueue(prompt("two"))
        pl.enqueue(prompt("three"), front=True)
        assert len(pl) == 4 and not pl.playing
        pl.start()
        await leg.sleep(3)
        pl.enqueue(prompt("four"))
        await leg.sleep(0.1)
        pl.flush()
        await leg.sleep(1)

    apps.route("100", app)
    call = sim.place_call("100")
    sim.advance(5)
    assert call.heard() == [play("three"), play("one"), "wave/play//missing.au", play("two"),
                            play("four")]
    assert events == ["MediaError", "empty"]          # no "empty" after flush
    apps.clean()
