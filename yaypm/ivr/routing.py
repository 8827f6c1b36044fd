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

A route's ``guard(message)`` may decide later: it returns a ``bool``, a ``Deferred[bool]`` or
is an ``async def`` (a database lookup, say).  ``call.route`` stays unanswered while it runs;
False hands the message to the next route, or answers it unhandled.  A guard that raises,
fails or is still undecided at :data:`GUARD_SHARE` of the dispatcher's answer deadline (it is
then cancelled) counts as False and is logged; the deadline itself stays the last resort.
What the guard answered (any true value: a lookup result, say) is the app's ``leg.claim``, so
the app need not ask again (True without a guard).

For a claimed call the app runs *inside* the ``call.route`` handler until its first real wait:
``leg.reject(486)`` there refuses the call in ``call.route`` itself (``-`` with ``error=busy``,
trace B3).  Otherwise the route is answered ``dumb/`` and the leg learns its dumb channel from
the ``call.execute`` notification (yate-messages §3.1); operations started before wait for it.

When the app returns, the leg is hung up (``normal``).  An exception in the app is logged with
its traceback and the leg hung up (``failure``); other calls go on.  ``CallEnded`` out of the
app is the normal end of a call whose party hung up and is not logged as an error.
"""

from __future__ import annotations

import inspect
import re
from typing import TYPE_CHECKING, Any, Callable, Iterable, List, Optional, Union

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
Guard = Callable[["Message"], Any]      # -> bool, Deferred[bool] or a coroutine of bool

#: The share of the dispatcher's answer deadline the guards of one ``call.route`` may take
#: together: the rest is left to answer the message before the dispatcher's own deadline.
GUARD_SHARE = 0.8

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
                 guard: Optional[Guard] = None) -> None:
        self.board = board
        self.called = called
        self.app = app
        self.guard = guard
        self._match = _matcher(called)

    def matches(self, msg: "Message") -> Any:
        """Whether this route takes ``msg``: the guard's answer (true: yes), or a Deferred of
        it from an asynchronous guard."""
        if not self._match(msg.get("called", "")):
            return False
        if self.guard is None:
            return True
        result = self.guard(msg)
        if inspect.iscoroutine(result):
            return defer.Deferred.fromCoroutine(result)
        return result

    def cancel(self) -> None:
        if self in self.board.routes:
            self.board.routes.remove(self)


def route(dispatcher: "Dispatcher", called: Matcher, app: Callable[[Leg], Any], *,
          guard: Optional[Guard] = None,
          priority: int = DEFAULT_PRIORITY) -> Route:
    """Claim the numbers ``called`` (a string, a compiled regex, a callable on the called
    number, or a list of those) and run ``app(leg)`` for each incoming call to them.

    ``app`` is an ``async def``, a generator flow (``yield d; getResult()``) or a plain
    function.  ``guard(message)`` may refuse a call the number matched (then the next route,
    or Yate's other routers, get it): it returns a bool, a ``Deferred[bool]`` or is an
    ``async def``; ``call.route`` waits for it (see the module documentation for failures and
    timeouts).  Routes are tried in the order they were added.
    """
    board = switchboard(dispatcher, priority)
    r = Route(board, called, app, guard)
    board.routes.append(r)
    if board._route_reg is None:
        board._route_reg = dispatcher.handler("call.route", lambda m: _on_route(board, m),
                                              priority)
    return r


def _on_route(board: Switchboard, msg: "Message") -> Union[None, bool, defer.Deferred]:
    limit = board.dispatcher.answer_deadline
    until = None if limit is None else board.timers.seconds() + limit * GUARD_SHARE
    return _try_routes(board, msg, list(board.routes), 0, until)


def _try_routes(board: Switchboard, msg: "Message", routes: List[Route], start: int,
                until: Optional[float]) -> Union[None, bool, defer.Deferred]:
    """Try ``routes[start:]`` on ``msg``: None once one claimed it (the app answered it),
    False when none did, or a Deferred of either while an asynchronous guard decides."""
    for i in range(start, len(routes)):
        r = routes[i]
        try:
            ok = r.matches(msg)
        except Exception:
            log.failure("Route guard failed for {called}", called=msg.get("called"))
            continue
        if isinstance(ok, defer.Deferred):
            return _await_guard(board, msg, routes, i, until, ok)
        if ok:
            _claim(board, msg, r, ok)
            return None
    board.stats["unclaimed"] += 1
    return False


def _await_guard(board: Switchboard, msg: "Message", routes: List[Route], i: int,
                 until: Optional[float], d: defer.Deferred) -> defer.Deferred:
    called = msg.get("called")
    if until is not None:
        clock: Any = board.timers           # IReactorTime enough for addTimeout
        d.addTimeout(max(until - clock.seconds(), 0.0), clock)

    def decided(mine: Any) -> Union[None, bool, defer.Deferred]:
        if msg.answered:                # the deadline or a lost connection answered it
            log.warn("Route guard for {called} decided after call.route was answered",
                     called=called)
            return None
        if mine and routes[i] in board.routes:
            _claim(board, msg, routes[i], mine)
            return None
        return _try_routes(board, msg, routes, i + 1, until)

    def failed(f: Failure) -> Union[None, bool, defer.Deferred]:
        if f.check(defer.TimeoutError):
            log.warn("Route guard for {called} undecided in time; not claimed", called=called)
        else:
            log.failure("Route guard failed for {called}; not claimed", f, called=called)
        if msg.answered:
            return None
        return _try_routes(board, msg, routes, i + 1, until)

    return d.addCallbacks(decided, failed)


def _claim(board: Switchboard, msg: "Message", r: Route, claim: Any) -> None:
    board.stats["routed"] += 1
    leg = Leg(board, msg.get("id"), direction="incoming", params=msg.attrs, state="routing")
    board._adopt(leg, getattr(r.app, "__name__", type(r.app).__name__))
    leg._route_msg = msg
    leg.claim = claim
    try:
        run_app(leg, r.app)               # runs until its first wait, inside call.route
    finally:
        leg._answer_route(msg)


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
