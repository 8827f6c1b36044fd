"""Incoming calls: claim numbers in ``call.route`` and run an app per call.

::

    async def hello(leg):
        await leg.answer()
        await leg.play("prompts/hello.slin")        # hung up when the app returns

    route(dispatcher, "ivr", hello)                  # exact number
    route(dispatcher, re.compile(r"9\\d{3}"), menu)   # or a regular expression (full match)
    route(dispatcher, lambda called: called.startswith("8"), app)

One persistent ``call.route`` handler (priority 50) serves every route of the dispatcher; a
``call.route`` no route claims is answered unhandled at once, so Yate's other routers see it.

For a claimed call the app runs *inside* the ``call.route`` handler until its first real wait:
``leg.reject(486)`` there refuses the call in ``call.route`` itself (``-`` with ``error=busy``,
trace B3).  Otherwise the route is answered ``dumb/`` and the leg learns its dumb channel from
the ``call.execute`` notification (yate-messages §3.1); operations started before wait for it.

When the app returns, the leg is hung up (``normal``).  An exception in the app is logged with
its traceback and the leg hung up (``failure``); other calls go on.  ``CallEnded`` out of the
app is the normal end of a call whose party hung up and is not logged as an error.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Union

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from yaypm import flow
from yaypm.ivr.errors import CallEnded
from yaypm.ivr.leg import Leg
from yaypm.ivr.switchboard import DEFAULT_PRIORITY, Switchboard, switchboard

if TYPE_CHECKING:
    from yaypm.dispatcher import Dispatcher, Message

__all__ = ["route", "Route", "run_app"]

Matcher = Union[str, "re.Pattern[str]", Callable[[str], bool], Iterable[Any]]

log = Logger(namespace="yaypm.ivr.routing")


def _matcher(called: Matcher) -> Callable[[str], bool]:
    if isinstance(called, str):
        return lambda number: number == called
    if isinstance(called, re.Pattern):
        return lambda number: called.fullmatch(number) is not None
    if callable(called):
        return called
    matchers = [_matcher(c) for c in called]
    return lambda number: any(m(number) for m in matchers)


class Route:
    """A claim on called numbers; ``cancel()`` releases it."""

    def __init__(self, board: Switchboard, called: Matcher, app: Callable[[Leg], Any],
                 guard: Optional[Callable[["Message"], bool]] = None) -> None:
        self.board = board
        self.called = called
        self.app = app
        self.guard = guard
        self._match = _matcher(called)

    def matches(self, msg: "Message") -> bool:
        if not self._match(msg.get("called", "")):
            return False
        return self.guard is None or bool(self.guard(msg))

    def cancel(self) -> None:
        if self in self.board.routes:
            self.board.routes.remove(self)


def route(dispatcher: "Dispatcher", called: Matcher, app: Callable[[Leg], Any], *,
          guard: Optional[Callable[["Message"], bool]] = None,
          priority: int = DEFAULT_PRIORITY) -> Route:
    """Claim the numbers ``called`` (a string, a compiled regex, a callable on the called
    number, or a list of those) and run ``app(leg)`` for each incoming call to them.

    ``app`` is an ``async def``, a generator flow (``yield d; getResult()``) or a plain
    function.  ``guard(message)`` may refuse a call the number matched (then the next route,
    or Yate's other routers, get it).  Routes are tried in the order they were added.
    """
    board = switchboard(dispatcher, priority)
    r = Route(board, called, app, guard)
    board.routes.append(r)
    if board._route_reg is None:
        board._route_reg = dispatcher.handler("call.route", lambda m: _on_route(board, m),
                                              priority)
    return r


def _on_route(board: Switchboard, msg: "Message") -> Optional[bool]:
    for r in board.routes:
        try:
            ok = r.matches(msg)
        except Exception:
            log.failure("Route guard failed for {called}", called=msg.get("called"))
            ok = False
        if ok:
            break
    else:
        board.stats["unclaimed"] += 1
        return False
    board.stats["routed"] += 1
    leg = Leg(board, msg.get("id"), direction="incoming", params=msg.attrs, state="routing")
    board._adopt(leg, getattr(r.app, "__name__", type(r.app).__name__))
    leg._route_msg = msg
    try:
        run_app(leg, r.app)               # runs until its first wait, inside call.route
    finally:
        leg._answer_route(msg)
    return None


def run_app(leg: Leg, app: Callable[[Leg], Any]) -> defer.Deferred:
    """Run ``app(leg)`` as the leg's flow; hang up when it ends; log its exceptions.

    Calls the app placed with ``leg.dial()`` and did not bridge are hung up with it.

    ``app`` may also be a :class:`~yaypm.ivr.dialog.Dialog` subclass (its ``serve``).
    """
    if isinstance(app, type) and hasattr(app, "serve"):
        app = app.serve
    d = flow.run(app, leg)
    leg.app = d

    def done(_: Any) -> None:
        leg._release_children()
        if leg.alive:
            leg.hangup("normal")

    def failed(f: Failure) -> None:
        leg._release_children()
        if f.check(CallEnded, defer.CancelledError):
            log.debug("App on {chan} ended: {error}", chan=leg.id, error=f.value)
            if leg.alive:
                leg.hangup("normal")
            return
        leg.board.stats["app_errors"] += 1
        log.failure("IVR app failed on {chan} (called {called})", f, chan=leg.id,
                    called=leg.called)
        if leg.alive:
            leg.hangup("failure")

    d.addCallbacks(done, failed)
    return d
