"""The dispatcher: handler tables, outstanding requests and messages, on Twisted Deferreds.

It speaks records of :mod:`yaypm.protocol` and writes lines through a ``write(str)`` callable
given by a connector (:meth:`Dispatcher.attach`).  It never touches a socket: the same object runs
over TCP, stdio, an embedded host or the in-memory transport of :mod:`yaypm.testing`.

The API keeps the original YAYPM names (``onmsg``, ``onwatch``, ``msg``, ``ret``, ``dispatch``,
``enqueue``, ``AbandonedException``, ``DisconnectedException``) so code written from its
documentation runs unchanged; persistent handlers, ``setlocal`` and the rest are additions.

Invariant: every ``%%>message`` Yate hands us is answered exactly once — by the application, by
``autoreturn``, at once as unhandled when nobody wants it or the application raised, or, as a last
resort, by the answer deadline a little before Yate's own timeout.
"""

from __future__ import annotations

import itertools
import weakref
from collections import deque
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Tuple

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from yaypm import protocol as P
from yaypm.protocol import ProtocolError

__all__ = [
    "Dispatcher", "Message", "AbandonedException", "DisconnectedException", "InstallError",
    "LineTooLongError", "YateError", "Registration",
]

wire_log = Logger(namespace="yaypm.wire")

DEFAULT_BUFSIZE = 8192


class AbandonedException(Exception):
    """A wait ended without its message: ``until`` fired, or the Deferred was cancelled.

    ``cause`` is what ended it (the result of the ``until`` Deferred, or the cancellation).
    """

    def __init__(self, cause: Any = None) -> None:
        super().__init__(cause)
        self.cause = cause


class DisconnectedException(Exception):
    """The connection to Yate is gone; the request will never be answered."""


class InstallError(Exception):
    """Yate refused an ``install``/``watch`` (already installed, bad name, ...)."""


class YateError(Exception):
    """Yate answered ``Error in:`` to one of our lines, or ``false`` to a request."""


class LineTooLongError(ValueError):
    """A line longer than Yate's ``bufsize`` would make Yate drop the connection; not sent."""


def _always(_: Any) -> bool:
    return True


# --------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------

class Message:
    """A Yate message: name, retvalue and an ordered list of parameters (repeated keys kept).

    A message received from Yate (``onmsg`` or a persistent handler) must be answered with
    :meth:`ret`.  A message made with :meth:`Dispatcher.msg` is sent with :meth:`dispatch` or
    :meth:`enqueue`.  ``m["key"]`` reads the first parameter of that name (``KeyError`` when
    absent, like a dict); ``m.get(key, default)`` does not raise.
    """

    __slots__ = ("_dispatcher", "_id", "_name", "_retvalue", "_params", "_time", "_received",
                 "_answered", "_changed", "_deleted", "_renamed", "_processed", "_generation",
                 "_deadline", "_orig_ret", "__weakref__")

    def __init__(self, dispatcher: "Dispatcher", name: str,
                 params: Iterable[Tuple[str, Optional[str]]] = (), retvalue: str = "",
                 id: str = "", time: Optional[int] = None, received: bool = False) -> None:
        self._dispatcher = dispatcher
        self._id = id
        self._name = name
        self._retvalue = retvalue
        self._orig_ret = retvalue
        self._params: List[List[Any]] = [[k, v] for k, v in params]
        self._time = time
        self._received = received
        self._answered = False
        self._changed: Optional[Dict[str, None]] = None     # ordered set of changed keys
        self._deleted: Optional[Dict[str, None]] = None
        self._renamed = False
        self._processed: Optional[bool] = None
        self._generation = dispatcher._generation
        self._deadline: Any = None

    # -- YAYPM compatible accessors ---------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        if value != self._name:
            self._name = value
            self._renamed = True

    @property
    def id(self) -> str:
        """The wire id: Yate's id for received messages, ours for dispatched ones."""
        return self._id

    @property
    def time(self) -> Optional[int]:
        return self._time

    @property
    def retvalue(self) -> str:
        return self._retvalue

    @retvalue.setter
    def retvalue(self, value: str) -> None:
        self._retvalue = "" if value is None else str(value)

    @property
    def processed(self) -> Optional[bool]:
        """For a dispatched message: Yate's processed flag once answered; None before."""
        return self._processed

    @property
    def answered(self) -> bool:
        """For a received message: whether it has been answered (by ``ret`` or otherwise)."""
        return self._answered

    def getName(self) -> str:
        return self.name

    def getRetValue(self) -> str:
        return self.retvalue

    def setRetValue(self, value: str) -> None:
        self.retvalue = value

    def getAttrs(self) -> Dict[str, str]:
        return self.attrs

    @property
    def attrs(self) -> Dict[str, str]:
        """Parameters as a dict (first value of each key wins), for reading."""
        out: Dict[str, str] = {}
        for k, v in self._params:
            if k not in out and v is not None:
                out[k] = v
        return out

    @property
    def params(self) -> List[Tuple[str, str]]:
        """Parameters as an ordered list of pairs, repeated keys included."""
        return [(k, v) for k, v in self._params if v is not None]

    def __getitem__(self, key: str) -> str:
        for k, v in self._params:
            if k == key and v is not None:
                return v
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        for k, v in self._params:
            if k == key and v is not None:
                return v
        return default

    def getall(self, key: str) -> List[str]:
        return [v for k, v in self._params if k == key and v is not None]

    def __contains__(self, key: str) -> bool:
        return any(k == key and v is not None for k, v in self._params)

    def __setitem__(self, key: str, value: Any) -> None:
        value = "" if value is None else str(value)
        for pair in self._params:
            if pair[0] == key:
                pair[1] = value
                break
        else:
            self._params.append([key, value])
        if self._changed is None:
            self._changed = {}
        self._changed[key] = None
        if self._deleted and key in self._deleted:
            del self._deleted[key]

    def __delitem__(self, key: str) -> None:
        before = len(self._params)
        self._params = [p for p in self._params if p[0] != key]
        if len(self._params) == before:
            raise KeyError(key)
        if self._deleted is None:
            self._deleted = {}
        self._deleted[key] = None
        if self._changed and key in self._changed:
            del self._changed[key]

    def keys(self) -> List[str]:
        return list(dict.fromkeys(k for k, _ in self.params))

    def items(self) -> Iterator[Tuple[str, str]]:
        return iter(self.params)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __repr__(self) -> str:
        return f"<Message {self._name} id={self._id!r} retvalue={self._retvalue!r} {self.params}>"

    __str__ = __repr__

    # -- answering -------------------------------------------------------------------------
    def ret(self, handled: bool = True, retValue: Optional[str] = None) -> None:
        """Answer this message to Yate (once); ``retValue`` replaces its return value.

        Parameters set on the message (``m["k"] = v``) and deletions travel with the answer.
        A second call is ignored with a warning: Yate accepts one answer per message.
        """
        if not self._received:
            raise TypeError("ret() answers a message received from Yate; use dispatch()")
        if retValue is not None:
            self.retvalue = retValue
        self._dispatcher._answer(self, bool(handled))

    # -- sending ---------------------------------------------------------------------------
    def dispatch(self) -> Deferred[bool]:
        """Send this message to Yate and wait for its answer.

        Fires with Yate's "processed" flag and updates name, params and retvalue in place.
        Errbacks with DisconnectedException if the connection drops first.  Cancelling forgets
        the answer; Yate still processes the message.
        """
        return self._dispatcher._dispatch(self)

    def enqueue(self) -> None:
        """Send this message to Yate without waiting (fire and forget: nothing is kept)."""
        self._dispatcher._enqueue(self)

    def _to_record(self, ident: str) -> P.Message:
        return P.Message(ident, self._time, self._name, self._retvalue,
                         tuple((k, v) for k, v in self._params))


# --------------------------------------------------------------------------------------------
# Handler tables
# --------------------------------------------------------------------------------------------

class _Waiter:
    """One pending one-shot wait (onmsg/onwatch)."""
    __slots__ = ("name", "guard", "deferred", "autoreturn", "until", "active")

    def __init__(self, name: str, guard: Callable, autoreturn: bool) -> None:
        self.name = name
        self.guard = guard
        self.autoreturn = autoreturn
        self.deferred: Optional[Deferred] = None
        self.until: Optional[_UntilLink] = None
        self.active = True


class _UntilLink:
    """The waits abandoned when one ``until`` Deferred fires (one callback on it for all)."""
    __slots__ = ("waiters", "fired")

    def __init__(self) -> None:
        self.waiters: Dict[_Waiter, Dict[str, List[_Waiter]]] = {}
        self.fired = False


class Registration:
    """A persistent handler or watcher; ``cancel()`` removes it (uninstall is explicit)."""
    __slots__ = ("name", "callback", "_table", "active", "installed")

    def __init__(self, name: str, callback: Callable, table: Dict[str, list]) -> None:
        self.name = name
        self.callback = callback
        self._table = table
        self.active = True
        self.installed: Deferred = Deferred()

    def cancel(self) -> None:
        if self.active:
            self.active = False
            entries = self._table.get(self.name)
            if entries is not None:
                try:
                    entries.remove(self)
                except ValueError:
                    pass
                if not entries:
                    del self._table[self.name]


class _Install:
    """What we asked Yate to install for one message name (re-sent after a reconnect)."""
    __slots__ = ("name", "priority", "filter_name", "filter_value", "confirmed", "waiting")

    def __init__(self, name: str, priority: Optional[int], filter_name: Optional[str],
                 filter_value: Optional[str]) -> None:
        self.name = name
        self.priority = priority
        self.filter_name = filter_name
        self.filter_value = filter_value
        self.confirmed = False
        self.waiting: List[Deferred] = []


class _Control:
    """A request whose reply comes back in request order (install, watch, setlocal...)."""
    __slots__ = ("line", "kind", "name", "deferred")

    def __init__(self, line: str, kind: type, name: str, deferred: Optional[Deferred]) -> None:
        self.line = line
        self.kind = kind
        self.name = name
        self.deferred = deferred


# --------------------------------------------------------------------------------------------
# The dispatcher
# --------------------------------------------------------------------------------------------

class Dispatcher:
    """One connection's worth of Yate handlers, watchers and outstanding requests.

    ``clock`` is an ``IReactorTime`` (``task.Clock`` in tests).  ``role`` ("global" or
    "channel") makes :meth:`attach` send ``%%>connect:<role>`` first — only for listeners
    without a preset role.  ``default_priority`` is used by ``onmsg`` installs.
    ``answer_deadline`` (seconds, None to disable) answers a received message unhandled when
    the application has neither answered it nor failed by then, so Yate's thread is released
    before its own timeout (10 s by default) and the invariant holds even for a forgotten
    ``ret()``.
    """

    log = Logger()
    observer: Any = None   # monitoring hook: .message_received(m) / .message_answered(m)
    #: Emit every protocol line to the ``yaypm.wire`` logger at debug level.  An emitted event
    #: costs about as much as parsing the line, even when no observer keeps debug events, so a
    #: busy production dispatcher may turn it off (``yaypm run`` does unless ``-v``).
    log_wire = True

    def __init__(self, clock: Optional[IReactorTime] = None, *, role: Optional[str] = None,
                 default_priority: int = 100, answer_deadline: Optional[float] = 9.0,
                 id_prefix: str = "yp") -> None:
        if clock is None:
            from twisted.internet import reactor as clock  # noqa: imported late on purpose
        self.clock = clock
        self.role = role
        self.default_priority = default_priority
        self.answer_deadline = answer_deadline
        self._configured_deadline = answer_deadline
        self._write: Optional[Callable[[str], None]] = None
        self._generation = 0
        self._id_prefix = id_prefix
        self._ids = itertools.count(1)
        self.bufsize = DEFAULT_BUFSIZE
        self._waiters: Dict[str, List[_Waiter]] = {}
        self._watch_waiters: Dict[str, List[_Waiter]] = {}
        self._handlers: Dict[str, List[Registration]] = {}
        self._watchers: Dict[str, List[Registration]] = {}
        self._installs: Dict[str, _Install] = {}
        self._watches: Dict[str, _Install] = {}
        self._setlocals: Dict[str, str] = {}
        self._outstanding: Dict[str, Tuple[Message, Deferred]] = {}
        self._controls: Deque[_Control] = deque()
        self._unanswered: Dict[str, Message] = {}
        self._untils: "weakref.WeakKeyDictionary[Deferred, _UntilLink]" = \
            weakref.WeakKeyDictionary()
        self._disconnect_reason: Any = DisconnectedException("not connected yet")
        self.stats = {"received": 0, "answered": 0, "unhandled": 0, "dispatched": 0,
                      "errors": 0, "deadline": 0}

    # -- connection ------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._write is not None

    def attach(self, write: Callable[[str], None]) -> None:
        """A connection is up: remember how to write, then re-send our state to Yate.

        Order: ``%%>connect`` (if a role is configured), setlocals, installs, watches — so a
        reconnect restores exactly what the application had asked for.
        """
        self._write = write
        self._generation += 1
        if self.role:
            self._send(P.Connect(self.role).encode())
        for name, value in self._setlocals.items():
            self._send_control(P.SetLocal(name, value), P.SetLocalReply, name, None)
        for inst in self._installs.values():
            inst.confirmed = False
            self._send_install(inst)
        for w in self._watches.values():
            w.confirmed = False
            self._send_watch(w)

    def detach(self, reason: Any = None) -> None:
        """The connection is gone: fail what waited for an answer; keep waits for new messages."""
        self._write = None
        if isinstance(reason, Failure):
            reason = reason.value
        err = reason if isinstance(reason, DisconnectedException) else \
            DisconnectedException(reason)
        self._disconnect_reason = err
        outstanding, self._outstanding = self._outstanding, {}
        for msg, d in outstanding.values():
            d.errback(Failure(err))
        controls, self._controls = self._controls, deque()
        for c in controls:
            if c.deferred is not None and not c.deferred.called:
                c.deferred.errback(Failure(err))
        unanswered, self._unanswered = self._unanswered, {}
        for m in unanswered.values():
            m._answered = True              # Yate released them as unhandled (extmodule §8)
            self._cancel_deadline(m)

    # -- lines in ----------------------------------------------------------------------------
    def line_received(self, line: str) -> None:
        """Parse one line from Yate and act on it; a malformed line is logged and skipped."""
        if self.log_wire:
            wire_log.debug("<- {line}", line=line)
        if not line or line == "\r":
            return                       # Yate ignores empty lines; so do we (extmodule §2)
        try:
            record = P.parse_line(line)
        except ProtocolError as e:
            self.stats["errors"] += 1
            self.log.warn("Unparseable line from Yate: {error}", error=str(e))
            return
        self.received(record)

    def received(self, record: P.Record) -> None:
        """Act on one record from Yate."""
        kind = type(record)
        if kind is P.Message:
            self._handle_message(record)
        elif kind is P.MessageAnswer:
            if record.id:
                self._handle_answer(record)
            else:
                self._handle_notification(record)
        elif kind is P.ErrorIn:
            self._handle_error(record)
        elif kind is P.QuitReply:
            self.log.info("Yate acknowledged quit")
        elif kind in (P.InstallReply, P.UninstallReply, P.WatchReply, P.UnwatchReply,
                      P.SetLocalReply):
            self._handle_reply(record)
        else:
            self.log.warn("Unexpected line from Yate: {line}", line=record.encode())

    # -- handler calls from Yate -------------------------------------------------------------
    def _handle_message(self, rec: P.Message) -> None:
        self.stats["received"] += 1
        m = Message(self, rec.name, rec.params, rec.retvalue, rec.id, rec.time, received=True)
        self._unanswered[rec.id] = m
        if self.observer is not None:
            self.observer.message_received(m)
        self._route(m)

    def _route(self, m: Message) -> None:
        """Hand a received message to the first one-shot wait whose guard accepts it, else to
        the handlers in order; nobody's message is answered unhandled at once."""
        name = m._name
        waiters = self._waiters.get(name)
        if waiters:
            for w in waiters:
                if self._accepts(w, m):
                    self._remove_waiter(self._waiters, w)
                    if w.autoreturn:
                        self._answer_for_app(m, True)
                    self._deliver(m, w.deferred)
                    return
        handlers = self._handlers.get(name)
        if handlers:
            for reg in list(handlers):
                try:
                    result = reg.callback(m)
                except Exception:
                    self.log.failure("Handler for {name} raised", name=name)
                    self._answer_failed(m)
                    return
                if isinstance(result, Deferred):
                    result.addCallbacks(lambda r, m=m: self._handler_result(m, r),
                                        lambda f, m=m: self._handler_failed(m, f))
                    self._arm_deadline(m)
                    return
                if result is None and not m._answered:
                    self._arm_deadline(m)   # the handler will answer later
                    return
                if result is None or m._answered:
                    return
                self._answer_for_app(m, bool(result))
                return
        # Nobody wants it: answer at once, changing nothing.
        self.stats["unhandled"] += 1
        self._answer(m, False, failed=True)

    def _accepts(self, w: _Waiter, m: Message) -> bool:
        """Whether the wait's guard takes ``m``; a guard that raises is logged, as a no."""
        try:
            return bool(w.guard(m))
        except Exception:
            self.log.failure("Guard for {name} raised; treated as no match", name=m._name)
            return False

    def _answer_for_app(self, m: Message, handled: bool) -> None:
        """Answer as the app asked (a handler's return value, ``autoreturn``): with the
        parameters it changed, as ``m.ret(handled)`` would."""
        m.ret(handled)

    def _deliver(self, m: Message, d: Deferred) -> None:
        d.callback(m)
        if not m._answered:
            d.addErrback(self._waiter_failed, m)
            if not m._answered:
                self._arm_deadline(m)

    def _waiter_failed(self, f: Failure, m: Message) -> None:
        self.log.failure("Callback for {name} failed", f, name=m._name)
        self._answer_failed(m)

    def _handler_result(self, m: Message, result: Any) -> None:
        if result is not None and not m._answered:
            self._answer_for_app(m, bool(result))

    def _handler_failed(self, m: Message, f: Failure) -> None:
        self.log.failure("Handler for {name} failed", f, name=m._name)
        self._answer_failed(m)

    def _answer_failed(self, m: Message) -> None:
        if not m._answered:
            self._answer(m, False, failed=True)

    def _arm_deadline(self, m: Message) -> None:
        if self.answer_deadline is None or m._answered or m._deadline is not None:
            return
        m._deadline = self.clock.callLater(self.answer_deadline, self._deadline_expired, m)

    def _cancel_deadline(self, m: Message) -> None:
        if m._deadline is not None:
            if m._deadline.active():
                m._deadline.cancel()
            m._deadline = None

    def _deadline_expired(self, m: Message) -> None:
        m._deadline = None
        if not m._answered:
            self.stats["deadline"] += 1
            self.log.warn("No answer to {name} ({id}) after {secs} s: answered unhandled",
                          name=m._name, id=m._id, secs=self.answer_deadline)
            self._answer(m, False, failed=True)

    def _answer(self, m: Message, handled: bool, failed: bool = False) -> None:
        if m._answered:
            if m._generation == self._generation and self._write is not None:
                self.log.warn("{name} ({id}) answered twice; second answer dropped",
                              name=m._name, id=m._id)
            return
        m._answered = True
        self._cancel_deadline(m)
        self._unanswered.pop(m._id, None)
        if self.observer is not None:
            self.observer.message_answered(m)
        if m._generation != self._generation or self._write is None:
            return                      # Yate already released it when the connection dropped
        self.stats["answered"] += 1
        if failed or (not handled and not m._changed and not m._deleted and not m._renamed
                      and m._retvalue == m._orig_ret):
            line = "%%<message:" + P.escape(m._id) + (":true:" if handled else ":false:")
        else:
            params: List[Tuple[str, Optional[str]]] = []
            if m._changed:
                for key in m._changed:
                    params.append((key, m.get(key, "")))
            if m._deleted:
                for key in m._deleted:
                    params.append((key, None))
            try:
                line = P.MessageAnswer(m._id, handled, m._name, m._retvalue,
                                       tuple(params)).encode()
            except (ProtocolError, ValueError) as e:
                self.log.error("Cannot encode answer to {name}: {error}; answered unhandled",
                               name=m._name, error=str(e))
                line = "%%<message:" + P.escape(m._id) + ":false:"
        try:
            self._send(line)
        except LineTooLongError as e:
            self.log.error("{error}; {name} answered unhandled instead", error=str(e),
                           name=m._name)
            self._send("%%<message:" + P.escape(m._id) + ":false:")

    # -- answers and notifications ------------------------------------------------------------
    def _handle_answer(self, rec: P.MessageAnswer) -> None:
        entry = self._outstanding.pop(rec.id, None)
        if entry is None:
            self.log.warn("Answer for unknown message {id}", id=rec.id)
            return
        m, d = entry
        if rec.name is not None:
            if rec.name:
                m._name = rec.name
            m._retvalue = rec.retvalue
            m._params = [[k, v] for k, v in rec.params]
        m._processed = rec.processed
        d.callback(rec.processed)

    def _handle_notification(self, rec: P.MessageAnswer) -> None:
        # extmodule sends one notification per message, for the name's watch and the
        # every-message watch ("") alike.
        self._notify_watchers(rec.name or "", rec.params, rec.retvalue, rec.processed)

    def _notify_watchers(self, name: str, params: Any, retvalue: str,
                         processed: Optional[bool], watched: Optional[str] = None) -> None:
        """A notification (a copy of ``name`` after its dispatch): fire the one-shot watch
        waits whose guard accepts it, then call the persistent watchers.

        ``watched``: the one watch name it came for (Yate's in-process host sends a copy per
        watch); None: the watch of ``name`` and the every-message watch ``""`` both get it.
        A failing guard or watcher is logged; the others still run.
        """
        if watched is None:
            keys: Tuple[str, ...] = (name, "") if name else ("",)
        else:
            keys = (watched,)
        waiters = [w for k in keys for w in self._watch_waiters.get(k, ())]
        tables = [regs for regs in (self._watchers.get(k) for k in keys) if regs]
        if not waiters and not tables:
            return
        m = Message(self, name, params, retvalue, "", None)
        m._processed = processed
        fired = [w for w in waiters if self._accepts(w, m)]
        for w in fired:
            self._remove_waiter(self._watch_waiters, w)
            w.deferred.callback(m)
            # App code ran in our call: a failure it left in the chain is logged here
            # rather than as "Unhandled error in Deferred" at garbage collection.
            w.deferred.addErrback(
                lambda f: self.log.failure("Watch callback for {name} failed", f, name=name))
        for regs in tables:
            for reg in list(regs):
                try:
                    r = reg.callback(m)
                    if isinstance(r, Deferred):
                        r.addErrback(lambda f: self.log.failure(
                            "Watcher for {name} failed", f, name=name))
                except Exception:
                    self.log.failure("Watcher for {name} raised", name=name)

    def _handle_error(self, rec: P.ErrorIn) -> None:
        for c in self._controls:
            if c.line == rec.line:
                self._controls.remove(c)
                if c.deferred is not None and not c.deferred.called:
                    c.deferred.errback(YateError(f"Yate refused: {rec.line}"))
                return
        for ident, (m, d) in list(self._outstanding.items()):
            if rec.line.startswith("%%>message:" + P.escape(ident) + ":"):
                del self._outstanding[ident]
                d.errback(YateError(f"Yate refused: {rec.line}"))
                return
        self.log.error("Yate refused a line: {line}", line=rec.line)

    def _handle_reply(self, rec: Any) -> None:
        kind = type(rec)
        for c in self._controls:
            if c.kind is kind and c.name == rec.name:
                break
            if kind is P.SetLocalReply and c.kind is kind:
                break
        else:
            self.log.warn("Reply nobody asked for: {line}", line=rec.encode())
            return
        self._controls.remove(c)
        if kind is P.InstallReply:
            self._install_reply(rec)
        elif kind is P.WatchReply:
            self._watch_reply(rec)
        elif kind is P.SetLocalReply and rec.name == "timeout" and rec.success:
            self._follow_timeout(rec.value)
        elif kind is P.SetLocalReply and rec.name == "bufsize" and rec.success:
            try:
                self.bufsize = int(rec.value)
            except ValueError:
                pass
        d = c.deferred
        if d is None or d.called:
            return
        if kind is P.SetLocalReply:
            if rec.success:
                d.callback(rec.value)
            else:
                d.errback(YateError(f"setlocal {rec.name} refused (value {rec.value!r})"))
        elif kind is P.UninstallReply:
            d.callback(rec.success)
        elif kind is P.UnwatchReply:
            d.callback(rec.success)
        else:
            d.callback(rec.success) if rec.success else d.errback(
                InstallError(f"Yate refused to {'install' if kind is P.InstallReply else 'watch'}"
                             f" {rec.name}"))

    def _follow_timeout(self, value: str) -> None:
        """Yate's answer timeout changed (ms): keep our deadline a little before it.

        With the default deadline (9 s) and ``setlocal('timeout', 1000)``, a forgotten answer
        would otherwise reach Yate after it had given up (trace A4).  ``timeout <= 0`` means
        Yate waits forever: the configured deadline applies.
        """
        if self._configured_deadline is None:
            return
        try:
            ms = int(value)
        except ValueError:
            return
        if ms <= 0:
            self.answer_deadline = self._configured_deadline
        else:
            self.answer_deadline = min(self._configured_deadline, ms * 0.9 / 1000.0)

    def _install_reply(self, rec: P.InstallReply) -> None:
        inst = self._installs.get(rec.name)
        if inst is None:
            return
        waiting, inst.waiting = inst.waiting, []
        if rec.success:
            inst.confirmed = True
            self.log.info("Installed {name} at priority {priority}", name=rec.name,
                          priority=rec.priority)
            for d in waiting:
                d.callback(rec.priority)
            return
        del self._installs[rec.name]
        err = InstallError(f"Yate refused to install a handler for {rec.name!r} "
                           f"(priority {rec.priority}): another handler of this connection "
                           f"has it, or the name is invalid")
        self.log.error("{error}", error=str(err))
        for d in waiting:
            d.errback(Failure(err))
        for w in list(self._waiters.get(rec.name, ())):
            self._remove_waiter(self._waiters, w)
            w.deferred.errback(Failure(err))
        for reg in list(self._handlers.get(rec.name, ())):
            reg.cancel()
            if not reg.installed.called:
                reg.installed.errback(Failure(err))

    def _watch_reply(self, rec: P.WatchReply) -> None:
        w = self._watches.get(rec.name)
        if w is None:
            return
        waiting, w.waiting = w.waiting, []
        if rec.success:
            w.confirmed = True
            for d in waiting:
                d.callback(True)
            return
        del self._watches[rec.name]
        err = InstallError(f"Yate refused to watch {rec.name!r}")
        for d in waiting:
            d.errback(Failure(err))
        for ww in list(self._watch_waiters.get(rec.name, ())):
            self._remove_waiter(self._watch_waiters, ww)
            ww.deferred.errback(Failure(err))
        for reg in list(self._watchers.get(rec.name, ())):
            reg.cancel()
            if not reg.installed.called:
                reg.installed.errback(Failure(err))

    # -- lines out ---------------------------------------------------------------------------
    def _send(self, line: str) -> None:
        if self._write is None:
            raise self._disconnect_reason
        limit = self.bufsize - 2
        if len(line) > limit // 4 and len(line.encode("utf-8", "surrogateescape")) > limit:
            raise LineTooLongError(
                f"line of {len(line.encode('utf-8', 'surrogateescape'))} bytes exceeds Yate's "
                f"bufsize {self.bufsize} - 2 (raise it with setlocal('bufsize', ...)): "
                f"{line[:60]}...")
        if self.log_wire:
            wire_log.debug("-> {line}", line=line)
        self._write(line)

    def _send_control(self, record: Any, kind: type, name: str,
                      d: Optional[Deferred]) -> None:
        line = record.encode()
        if self._write is None:
            return                    # re-sent by attach()
        control = _Control(line, kind, name, d)
        self._controls.append(control)
        try:
            self._send(line)
        except Exception:
            self._controls.remove(control)
            raise

    def _send_install(self, inst: _Install) -> None:
        self._send_control(P.Install(inst.priority, inst.name, inst.filter_name,
                                     inst.filter_value), P.InstallReply, inst.name, None)

    def _send_watch(self, w: _Install) -> None:
        self._send_control(P.Watch(w.name), P.WatchReply, w.name, None)

    def _next_id(self) -> str:
        return self._id_prefix + str(next(self._ids))

    def _dispatch(self, m: Message) -> Deferred[bool]:
        if m._received:
            return defer.fail(TypeError("a received message is answered with ret()"))
        ident = self._next_id()
        try:
            line = m._to_record(ident).encode()
        except Exception as e:
            return defer.fail(e)
        m._id = ident
        d: Deferred[bool] = Deferred(lambda _: self._outstanding.pop(ident, None))
        # Registered before writing: an in-process engine may answer inside the write call.
        self._outstanding[ident] = (m, d)
        try:
            self._send(line)
        except Exception as e:
            self._outstanding.pop(ident, None)
            return defer.fail(e)
        self.stats["dispatched"] += 1
        return d

    def _enqueue(self, m: Message) -> None:
        self._send(m._to_record("").encode())
        self.stats["dispatched"] += 1

    # -- installing ----------------------------------------------------------------------------
    def install(self, name: str, priority: Optional[int] = None,
                filter: Optional[Tuple[str, str]] = None) -> Deferred[int]:
        """Ask Yate to send us ``name`` messages; fires with the priority once confirmed.

        Yate allows one handler per name per connection, so the first install of a name wins;
        asking again with another priority or filter logs a warning and keeps the first.
        """
        if not name:
            raise ValueError("a handler needs a message name")
        prio = self.default_priority if priority is None else int(priority)
        fname, fvalue = (filter if filter is not None else (None, None))
        inst = self._installs.get(name)
        d: Deferred[int] = Deferred()
        if inst is not None:
            if (inst.priority, inst.filter_name, inst.filter_value) != (prio, fname, fvalue) \
                    and (priority is not None or filter is not None):
                self.log.warn("{name} is already installed at priority {prio} filter {f}; "
                              "keeping it", name=name, prio=inst.priority,
                              f=(inst.filter_name, inst.filter_value))
            if inst.confirmed:
                d.callback(inst.priority)
            else:
                inst.waiting.append(d)
            return d
        P.Install(prio, name, fname, fvalue).encode()      # validate before remembering it
        inst = _Install(name, prio, fname, fvalue)
        inst.waiting.append(d)
        self._installs[name] = inst
        self._send_install(inst)
        return d

    def uninstall(self, name: str) -> Deferred[bool]:
        """Remove our Yate handler for ``name``; waits and handlers for it stay registered."""
        self._installs.pop(name, None)
        d: Deferred[bool] = Deferred()
        if self._write is None:
            d.callback(False)
            return d
        self._send_control(P.Uninstall(name), P.UninstallReply, name, d)
        return d

    def watch(self, name: str) -> Deferred[bool]:
        """Ask Yate for notifications of ``name`` (empty: every message); fires when confirmed."""
        w = self._watches.get(name)
        d: Deferred[bool] = Deferred()
        if w is not None:
            if w.confirmed:
                d.callback(True)
            else:
                w.waiting.append(d)
            return d
        P.Watch(name).encode()
        w = _Install(name, None, None, None)
        w.waiting.append(d)
        self._watches[name] = w
        self._send_watch(w)
        return d

    def unwatch(self, name: str) -> Deferred[bool]:
        """Stop notifications of ``name``."""
        self._watches.pop(name, None)
        d: Deferred[bool] = Deferred()
        if self._write is None:
            d.callback(False)
            return d
        self._send_control(P.Unwatch(name), P.UnwatchReply, name, d)
        return d

    # -- the YAYPM API -------------------------------------------------------------------------
    def onmsg(self, name: str, guard: Callable[[Message], bool] = _always,
              until: Optional[Deferred] = None, autoreturn: bool = False,
              priority: Optional[int] = None) -> Deferred[Message]:
        """Fire once with the first ``name`` message that ``guard`` accepts.

        One-shot waits are tried in registration order; the first accepting one gets the
        message and must ``ret()`` it (``autoreturn=True`` answers it handled first).  The
        first wait for a name installs a Yate handler (``priority`` or the default).
        ``until``: a Deferred whose firing abandons the wait (errback AbandonedException with
        the cause); cancelling the returned Deferred removes the wait as well.
        """
        w = _Waiter(name, guard, autoreturn)
        self._start_wait(self._waiters, w, until)
        if name not in self._installs:
            inst_d = self.install(name, priority)
            inst_d.addErrback(lambda f: None)     # the waiters are failed by _install_reply
        return w.deferred

    def onwatch(self, name: str, guard: Callable[[Message], bool] = _always,
                until: Optional[Deferred] = None) -> Deferred[Message]:
        """Fire once with the first notification of ``name`` (after dispatch) ``guard`` accepts.

        Every matching watcher fires.  ``until`` and cancellation as for :meth:`onmsg`.
        """
        w = _Waiter(name, guard, False)
        self._start_wait(self._watch_waiters, w, until)
        if name not in self._watches:
            wd = self.watch(name)
            wd.addErrback(lambda f: None)
        return w.deferred

    def _start_wait(self, table: Dict[str, List[_Waiter]], w: _Waiter,
                    until: Optional[Deferred]) -> None:
        def cancel(d: Deferred) -> None:
            self._remove_waiter(table, w)
            # Replace CancelledError with AbandonedException so callers see one exception type.
            d.errback(Failure(AbandonedException(defer.CancelledError())))

        w.deferred = Deferred(cancel)
        table.setdefault(w.name, []).append(w)
        if until is not None:
            # One callback per ``until`` Deferred, shared by every wait that uses it: a call's
            # hang-up Deferred serves thousands of waits without its callback list growing.
            link = self._untils.get(until)
            if link is None or link.fired:
                link = _UntilLink()
                self._untils[until] = link
                link.waiters[w] = table
                w.until = link
                until.addBoth(self._until_fired, link)   # fires at once if until already has
            else:
                link.waiters[w] = table
                w.until = link

    def _until_fired(self, result: Any, link: "_UntilLink") -> Any:
        link.fired = True
        cause = result.value if isinstance(result, Failure) else result
        waiters, link.waiters = link.waiters, {}
        for w, table in waiters.items():
            if w.active:
                self._remove_waiter(table, w)
                w.deferred.errback(Failure(AbandonedException(cause)))
        return result

    def _remove_waiter(self, table: Dict[str, List[_Waiter]], w: _Waiter) -> None:
        if not w.active:
            return
        w.active = False
        if w.until is not None:
            w.until.waiters.pop(w, None)
            w.until = None
        lst = table.get(w.name)
        if lst is not None:
            try:
                lst.remove(w)
            except ValueError:
                pass
            if not lst:
                del table[w.name]

    def msg(self, name: str, attrs: Any = None, retValue: Optional[str] = None) -> Message:
        """Make a message to send with ``dispatch()`` or ``enqueue()``.

        ``attrs`` is a dict or a sequence of pairs (order is kept, repeated keys allowed).
        """
        if attrs is None:
            pairs: Iterable = ()
        elif isinstance(attrs, dict):
            pairs = attrs.items()
        else:
            pairs = attrs
        params = []
        for k, v in pairs:
            k = str(k)
            if "=" in k or not k:
                raise ValueError(f"parameter name {k!r} cannot be sent to Yate")
            params.append((k, "" if v is None else str(v)))
        return Message(self, name, params, "" if retValue is None else str(retValue))

    # -- additions -----------------------------------------------------------------------------
    def handler(self, name: str, callback: Callable[[Message], Any],
                priority: Optional[int] = None,
                filter: Optional[Tuple[str, str]] = None,
                install: bool = True) -> Registration:
        """Call ``callback(message)`` for every ``name`` message, until cancelled.

        The callback answers with ``message.ret(...)`` now or later, or returns a bool (or a
        Deferred firing one) that becomes the answer.  If it raises or fails, the message is
        answered unhandled and the error logged.  One-shot ``onmsg`` waits are served first.
        ``priority``/``filter`` go to Yate's install (first install of a name wins).

        ``install=False`` registers the callback without asking Yate for the messages: a
        channel script (``external/nodata/...``) is handed its ``call.execute`` unasked
        (yate-extmodule.md §9.2), and installing a ``call.execute`` handler would take every
        call's execute instead.
        """
        reg = Registration(name, callback, self._handlers)
        self._handlers.setdefault(name, []).append(reg)
        if not install:
            reg.installed.callback(None)
            return reg
        d = self.install(name, priority, filter)
        d.addCallbacks(lambda prio: reg.installed.called or reg.installed.callback(prio),
                       lambda f: None)
        return reg

    def watcher(self, name: str, callback: Callable[[Message], Any]) -> Registration:
        """Call ``callback(message)`` for every notification of ``name`` ("" = every message)."""
        reg = Registration(name, callback, self._watchers)
        self._watchers.setdefault(name, []).append(reg)
        d = self.watch(name)
        d.addCallbacks(lambda ok: reg.installed.called or reg.installed.callback(ok),
                       lambda f: None)
        return reg

    def setlocal(self, name: str, value: Any = "") -> Deferred[str]:
        """Set (or, with an empty value, query) a connection parameter; fires with Yate's value.

        Errbacks with YateError when Yate answers ``false`` (unknown or read-only name).  Set
        values are remembered and re-sent after a reconnect; queries are not.
        """
        if isinstance(value, bool):
            value = "true" if value else "false"
        value = "" if value is None else str(value)
        record = P.SetLocal(name, value)
        record.encode()                                      # validate now
        d: Deferred[str] = Deferred()
        if value != "" and not name.startswith(("engine.", "config.", "loaded.")):
            self._setlocals[name] = value
        if self._write is None:
            d.errback(self._disconnect_reason)
            return d
        self._send_control(record, P.SetLocalReply, name, d)
        return d

    def engine_version(self) -> Deferred[str]:
        """Yate's version string (``setlocal:engine.version``)."""
        return self.setlocal("engine.version")

    def engine_param(self, name: str) -> Deferred[str]:
        """An engine run parameter (``engine.<name>``: nodename, runid, sharedpath...)."""
        return self.setlocal("engine." + name)

    def config(self, section: str, key: str) -> Deferred[str]:
        """A value of Yate's main configuration file (``config.<section>.<key>``)."""
        return self.setlocal(f"config.{section}.{key}")

    def output(self, text: str) -> None:
        """Write text to Yate's log (``%%>output``); each line of ``text`` becomes one line."""
        for part in str(text).splitlines() or [""]:
            clean = "".join(ch if ch >= " " else " " for ch in part)
            self._send(P.Output(clean).encode())

    def debug(self, level: int, text: str) -> None:
        """Log ``text`` at a Yate debug level (``%%>debug``; 5 = warn ... 10 = all)."""
        self._send(P.Debug(level, text).encode())

    def quit(self) -> None:
        """Ask Yate to close this connection (``%%>quit``)."""
        self._send(P.Quit().encode())

    # -- introspection for tests and monitoring ---------------------------------------------
    def pending_count(self) -> int:
        """Everything still waiting: one-shot waits, outstanding dispatches, unanswered messages,
        unconfirmed requests.  Zero means nothing would leak if the app stopped now."""
        return (sum(len(v) for v in self._waiters.values())
                + sum(len(v) for v in self._watch_waiters.values())
                + len(self._outstanding) + len(self._unanswered) + len(self._controls))

    def unanswered_count(self) -> int:
        """Messages from Yate handed to the app and not answered yet (a gauge for monitoring)."""
        return len(self._unanswered)

    def waiting_count(self) -> int:
        """One-shot waits (onmsg + onwatch) still registered."""
        return (sum(len(v) for v in self._waiters.values())
                + sum(len(v) for v in self._watch_waiters.values()))
