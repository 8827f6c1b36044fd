"""Flow control on Deferreds: sleeps, races, timeouts, and the classic YAYPM generator style.

Everything here is cancellable, and cancelling a flow cancels what it waits on::

    index, result = yield XOR(leg.digits(count=1), sleep(5))    # first result wins
    d = timeout(leg.digits(count=4), 10)                          # errbacks defer.TimeoutError

Three ways to write a flow, all returning a Deferred:

* ``async def`` run with :func:`run` (or ``Deferred.fromCoroutine``);
* a classic YAYPM generator run with :func:`go`: ``yield d`` then ``x = getResult()``
  (``x = yield d`` works too);
* a plain function returning a value or a Deferred.

Time comes from an ``IReactorTime`` passed as ``clock=`` (``task.Clock`` in tests); the global
reactor is only imported, inside the function, when no clock is given.
"""

from __future__ import annotations

import itertools
import types
import weakref
from typing import Any, Callable, Dict, Generator, List, Optional, Sequence, Tuple

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from yaypm.dispatcher import AbandonedException

__all__ = ["sleep", "XOR", "OR", "timeout", "go", "getResult", "run", "as_deferred",
           "AbandonedException"]


def _default_clock(clock: Any) -> Any:
    if clock is None:
        from twisted.internet import reactor as clock   # noqa: imported late on purpose
    return clock


class _UntilHub:
    """The one callback an ``until`` Deferred carries, shared by every wait that uses it."""
    __slots__ = ("abandons", "fired")

    def __init__(self) -> None:
        self.abandons: Dict[int, Callable[[Any], None]] = {}
        self.fired = False


# A call's end Deferred may serve thousands of sleeps in its life: one hub per ``until`` keeps
# its callback list at one entry, and a finished wait simply leaves the hub.
_hubs: "weakref.WeakKeyDictionary[Deferred, _UntilHub]" = weakref.WeakKeyDictionary()
_hub_keys = itertools.count()


def _until_fired(result: Any, hub: _UntilHub) -> Any:
    hub.fired = True
    cause = result.value if isinstance(result, Failure) else result
    abandons, hub.abandons = hub.abandons, {}
    for abandon in abandons.values():
        abandon(cause)
    return result


def _link_until(d: Deferred, until: Deferred, abandon: Callable[[Any], None]) -> None:
    """Call ``abandon(cause)`` if ``until`` fires before ``d``; forget it once ``d`` fires."""
    hub = _hubs.get(until)
    if hub is None or hub.fired:
        hub = _UntilHub()
        _hubs[until] = hub
        key = next(_hub_keys)
        hub.abandons[key] = abandon
        until.addBoth(_until_fired, hub)        # runs at once if until has already fired
    else:
        key = next(_hub_keys)
        hub.abandons[key] = abandon

    def leave(result: Any) -> Any:
        hub.abandons.pop(key, None)
        return result

    d.addBoth(leave)


# --------------------------------------------------------------------------------------------
# sleep and timeout
# --------------------------------------------------------------------------------------------

def sleep(seconds: float, until: Optional[Deferred] = None, clock: Any = None) -> Deferred[None]:
    """Fire with None after ``seconds``.

    ``until``: a Deferred whose firing first abandons the sleep (errback
    :class:`~yaypm.dispatcher.AbandonedException` carrying the cause).  Cancelling removes the
    delayed call from the clock.
    """
    clock = _default_clock(clock)
    call = None

    def cancel(_: Deferred) -> None:
        if call is not None and call.active():
            call.cancel()

    d: Deferred[None] = Deferred(cancel)
    call = clock.callLater(seconds, d.callback, None)
    if until is not None:
        def abandon(cause: Any) -> None:
            if call.active():
                call.cancel()
            d.errback(Failure(AbandonedException(cause)))
        _link_until(d, until, abandon)
    return d


def timeout(d: Deferred, seconds: float, clock: Any = None) -> Deferred:
    """Errback ``d`` with ``defer.TimeoutError`` if it has not fired after ``seconds``.

    ``d`` is cancelled on expiry (so its canceller cleans up) and returned, for chaining.
    """
    return d.addTimeout(seconds, _default_clock(clock))


# --------------------------------------------------------------------------------------------
# races
# --------------------------------------------------------------------------------------------

class _Failed:
    """A failure carried through ``defer.race`` as a success, so that it can win the race."""
    __slots__ = ("failure",)

    def __init__(self, failure: Failure) -> None:
        self.failure = failure


def _deferreds(items: Sequence[Any]) -> List[Deferred]:
    if len(items) == 1 and isinstance(items[0], (list, tuple)):
        items = items[0]
    if not items:
        raise ValueError("a race needs at least one Deferred")
    return [as_deferred(x) for x in items]


def XOR(*deferreds: Any) -> Deferred[Tuple[int, Any]]:
    """The first of ``deferreds`` to fire wins; the others are cancelled.

    Fires with ``(index, result)`` when the winner succeeded; errbacks with the winner's own
    failure (not wrapped) when it failed — e.g. ``CallEnded`` from a leg operation.
    Cancelling the XOR cancels every input.  Coroutines are accepted and run as Deferreds.
    The inputs are consumed: add callbacks to the XOR, not to them.
    """
    ds = _deferreds(deferreds)
    proxies: List[Deferred] = []
    for d in ds:
        p: Deferred = Deferred(lambda _, d=d: d.cancel())
        d.addCallbacks(p.callback, lambda f, p=p: p.callback(_Failed(f)))
        proxies.append(p)

    def unwrap(result: Tuple[int, Any]) -> Any:
        index, value = result
        if isinstance(value, _Failed):
            return value.failure
        return (index, value)

    return defer.race(proxies).addCallback(unwrap)


def OR(*deferreds: Any, patient: bool = True) -> Deferred[Tuple[int, Any]]:
    """The first of ``deferreds`` to succeed wins; the others go on (they are not cancelled).

    Fires with ``(index, result)``.  ``patient=True``: failures are ignored until every input
    has failed, then the first failure is reported; ``patient=False``: the first failure is
    reported at once.  Successes stay in the inputs' own chains (they can still be used);
    failures are consumed here.  Cancelling the OR cancels every input still pending.
    """
    ds = _deferreds(deferreds)

    def cancel(_: Deferred) -> None:
        for d in ds:
            if not d.called:
                d.cancel()

    result: Deferred[Tuple[int, Any]] = Deferred(cancel)
    failures: List[Failure] = []

    def succeeded(value: Any, index: int) -> Any:
        if not result.called:
            result.callback((index, value))
        return value

    def failed(f: Failure, index: int) -> None:
        failures.append(f)
        if not result.called and (not patient or len(failures) == len(ds)):
            result.errback(failures[0])
        return None

    for i, d in enumerate(ds):
        d.addCallbacks(succeeded, failed, callbackArgs=(i,), errbackArgs=(i,))
    return result


# --------------------------------------------------------------------------------------------
# the classic generator style
# --------------------------------------------------------------------------------------------

class _Result:
    """The outcome of the Deferred a generator flow last yielded, read by getResult()."""
    __slots__ = ("value", "failure", "consumed")

    def __init__(self, value: Any = None, failure: Optional[Failure] = None) -> None:
        self.value = value
        self.failure = failure
        self.consumed = failure is None


# One entry per generator step being run; nested steps (a step whose work fires another
# flow's Deferred synchronously) push and pop their own entry, so getResult() always answers
# for the generator that is running.
_current: List[Optional[_Result]] = []


def getResult() -> Any:
    """The result of the Deferred the running generator flow last yielded.

    Raises that Deferred's exception if it failed.  Outside a flow step (or before the first
    yield) returns None.
    """
    if not _current or _current[-1] is None:
        return None
    r = _current[-1]
    if r.failure is not None:
        r.consumed = True
        r.failure.raiseException()
    return r.value


class _Flow:
    """Runs one generator: each yielded Deferred is awaited, then the generator resumes."""

    def __init__(self, gen: Generator) -> None:
        self.gen = gen
        self.waiting: Optional[Deferred] = None
        self.result: Deferred = Deferred(self._cancel)
        self._step(None, _Result())

    def _cancel(self, _: Deferred) -> None:
        w = self.waiting
        if w is not None:
            w.cancel()

    def _step(self, send: Any, result: _Result) -> None:
        while True:
            _current.append(result)
            try:
                try:
                    yielded = self.gen.send(send)
                except StopIteration as stop:
                    if result.failure is not None and not result.consumed:
                        # The generator ended without reading a failure: do not lose it.
                        self._finish(result.failure)
                    else:
                        self._finish(stop.value)
                    return
                except BaseException:
                    self._finish(Failure())
                    return
                if result.failure is not None and not result.consumed:
                    # A failure nobody read with getResult(): raise it in the generator at
                    # this yield rather than let a loop spin on a dead call.
                    if isinstance(yielded, Deferred):
                        yielded.addErrback(lambda f: None)
                        yielded.cancel()
                    unread, result = result.failure, _Result()
                    try:
                        yielded = unread.throwExceptionIntoGenerator(self.gen)
                    except StopIteration as stop:
                        self._finish(stop.value)
                        return
                    except BaseException:
                        self._finish(Failure())
                        return
            finally:
                _current.pop()
            if isinstance(yielded, (types.CoroutineType, types.GeneratorType)):
                yielded = as_deferred(yielded)       # a sub-flow
            if not isinstance(yielded, Deferred):
                # Classic YAYPM: yielding a plain value ends the flow with it.
                self.gen.close()
                self._finish(yielded)
                return
            box: List[Any] = []
            yielded.addBoth(box.append)
            if box:                          # already fired: loop instead of recursing
                send, result = self._outcome(box[0])
                continue
            self.waiting = yielded
            box_d = yielded

            def resume(_: Any, box: List[Any] = box, box_d: Deferred = box_d) -> None:
                if self.waiting is box_d:
                    self.waiting = None
                send, result = self._outcome(box[0])
                self._step(send, result)
            # ``box`` already holds the result once this runs (callbacks run in order).
            yielded.addBoth(resume)
            return

    @staticmethod
    def _outcome(value: Any) -> Tuple[Any, _Result]:
        if isinstance(value, Failure):
            return None, _Result(failure=value)
        return value, _Result(value)

    def _finish(self, value: Any) -> None:
        if not self.result.called:
            if isinstance(value, Failure):
                self.result.errback(value)
            else:
                self.result.callback(value)


def go(flow: Any) -> Deferred:
    """Run a classic YAYPM flow and return a Deferred for its outcome.

    ``flow`` is usually a generator: each ``yield d`` waits for ``d``; afterwards
    ``getResult()`` returns its result or raises its exception (``x = yield d`` also gets the
    result; a failure is then raised by ``getResult()``, or thrown in at the next ``yield`` if
    nobody read it).  Yielding a plain value, or returning, ends the flow with that value.
    Cancelling the returned Deferred cancels the Deferred the flow waits on.  A coroutine,
    Deferred or plain value is accepted too and adapted.
    """
    if isinstance(flow, types.GeneratorType):
        return _Flow(flow).result
    return as_deferred(flow)


# --------------------------------------------------------------------------------------------
# adapting apps
# --------------------------------------------------------------------------------------------

def as_deferred(value: Any) -> Deferred:
    """A Deferred for ``value``: a Deferred as is, a coroutine or generator flow run, a plain
    value already fired."""
    if isinstance(value, Deferred):
        return value
    if isinstance(value, types.CoroutineType):
        return Deferred.fromCoroutine(value)
    if isinstance(value, types.GeneratorType):
        return _Flow(value).result
    return defer.succeed(value)


def run(f: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred:
    """Call ``f(*args, **kwargs)`` — an ``async def``, a generator flow or a plain function — and
    return a Deferred for its outcome.  An exception raised by the call becomes a failure."""
    try:
        value = f(*args, **kwargs)
    except BaseException:
        return defer.fail(Failure())
    return as_deferred(value)
