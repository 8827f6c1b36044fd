"""Embedded mode: yaypm applications running inside Yate's process (the ``yaypmhost`` module).

Yate's ``yaypmhost.yate`` module (``embedded/``) starts one CPython interpreter, imports this
module and calls :func:`_host_main`.  Each script of ``yaypmhost.conf [scripts]`` runs with
``__name__ == "__embedded_yaypm_module__"`` and calls :func:`embeddedStart` (or YAYPM's spelling
:func:`embededStart`)::

    if __name__ == "__main__":
        reactor.connectTCP("localhost", 5039, TCPDispatcherFactory(start))
        installSignalHandlers = 1
    elif __name__ == "__embedded_yaypm_module__":
        yaypm.embededStart(start)
        installSignalHandlers = 0
    reactor.run(installSignalHandlers)          # a no-op inside Yate: the host runs the reactor

:class:`EmbeddedDispatcher` has the interface of :class:`yaypm.dispatcher.Dispatcher`
(``onmsg``, ``onwatch``, ``handler``, ``watcher``, ``msg().dispatch()/enqueue()``, ``ret()``,
``until``, cancellation), on the C extension ``_yaypmhost`` instead of extmodule lines.

Threads.  Twisted's reactor runs in its own Python thread ("yaypm-reactor"); all application code
runs there.  A Yate thread calling a Python handler hands the live message to the reactor with
``callFromThread`` and waits (GIL released) for the answer, at most the handler timeout
(``yaypmhost.conf [general] timeout``, or ``setlocal("timeout", ms)``); it then answers
unhandled itself.  ``Message.dispatch()`` runs Yate's synchronous dispatch in a worker thread
of the host, so the reactor never blocks.

Messages.  A received message (``onmsg``, ``handler``) is a *proxy* to the live Yate message,
as in the original YAYPM: reads and writes go straight to Yate while a Yate thread waits for
the answer.  ``ret()`` leaves a read-only snapshot of the answered message, so code written for
TCP that reads after answering (``route.ret(True, "dumb/"); print(route["called"])``) keeps
working; changing it after ``ret()``, and any access after the host released it unanswered
(timeout, Yate stopping), raises :class:`MessageReleasedError` -- never a crash.  Watch
notifications and the messages you build with ``msg()`` are plain copies
(:class:`yaypm.dispatcher.Message`).

Invariant: every message handed to Python is answered exactly once -- by the app, by
``autoreturn``, at once as unhandled when no wait or handler wants it or the app raised, or by
the host when the timeout expires.
"""

from __future__ import annotations

import builtins
import itertools
import os
import queue
import sys
import threading
import time
import types
from typing import Any, Callable, Dict, List, Optional, Tuple

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger, LogLevel, formatEvent
from twisted.python.failure import Failure

from yaypm import protocol as P
from yaypm.dispatcher import DisconnectedException, Dispatcher, Message, YateError

try:                                   # only inside Yate
    import _yaypmhost                  # type: ignore[import-not-found]
except ImportError:                    # pragma: no cover - outside Yate
    _yaypmhost = None

__all__ = [
    "EMBEDDED_MODULE_NAME", "EmbeddedDispatcher", "EmbeddedMessage", "MessageReleasedError",
    "embeddedStart", "embededStart", "host_stats", "in_yate",
]

EMBEDDED_MODULE_NAME = "__embedded_yaypm_module__"

log = Logger(namespace="yaypm.embedded")

# Yate debug levels (yateclass.h)
_DEBUG_CRIT, _DEBUG_WARN, _DEBUG_MILD, _DEBUG_NOTE = 2, 5, 6, 7
_DEBUG_CALL, _DEBUG_INFO, _DEBUG_ALL = 8, 9, 10


class MessageReleasedError(RuntimeError):
    """The Yate message behind a proxy was released: answered, timed out, or Yate is stopping.

    Raised by a change (or a second ``ret()``) after the answer, and by every access after the
    host released the message unanswered (YAYPM: "Messages created by EmbeddedDispatcher are
    just proxies to true YATE messages").
    """


def in_yate() -> bool:
    """True inside Yate's process (the ``_yaypmhost`` host API is importable)."""
    return _yaypmhost is not None


# --------------------------------------------------------------------------------------------
# Received messages: proxies
# --------------------------------------------------------------------------------------------

class EmbeddedMessage(Message):
    """A live Yate message handed to a Python handler; writable until answered.

    Same accessors as :class:`yaypm.dispatcher.Message`; each one reads or writes the Yate
    message itself.  After :meth:`ret` reads see the answered message and writes raise
    :class:`MessageReleasedError`; after the host's timeout (or at shutdown) every access does.
    """

    __slots__ = ("_raw", "_done")

    def __init__(self, dispatcher: "EmbeddedDispatcher", raw: Any) -> None:
        self._dispatcher = dispatcher
        self._raw = raw
        self._done = False
        self._id = raw.id
        self._received = True
        self._deadline = None
        self._processed = None
        self._generation = dispatcher._generation
        self._time = raw.time
        try:
            self._name = raw.name()
        except MessageReleasedError:
            self._name = "?"

    def _writable(self) -> Any:
        if self._done:
            raise MessageReleasedError(
                f"Yate message {self._id} was answered: it can no longer be changed")
        return self._raw

    # -- state ---------------------------------------------------------------------------
    @property
    def _answered(self) -> bool:  # type: ignore[override]
        return self._done or not self._raw.alive

    @property
    def alive(self) -> bool:
        """Yate still waits for the answer (not answered, not timed out): writable."""
        return self._raw.alive

    # -- accessors (live) ------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._raw.name()

    @name.setter
    def name(self, value: str) -> None:
        self._writable().set_name(str(value))
        self._name = str(value)

    @property
    def retvalue(self) -> str:
        return self._raw.retvalue()

    @retvalue.setter
    def retvalue(self, value: str) -> None:
        self._writable().set_retvalue("" if value is None else str(value))

    @property
    def processed(self) -> Optional[bool]:
        return None

    @property
    def broadcast(self) -> bool:
        return self._raw.broadcast

    @property
    def attrs(self) -> Dict[str, str]:
        out: Dict[str, str] = {}
        for k, v in self._raw.params():
            out.setdefault(k, v)
        return out

    @property
    def params(self) -> List[Tuple[str, str]]:
        return self._raw.params()

    def __getitem__(self, key: str) -> str:
        v = self._raw.get(key)
        if v is None:
            raise KeyError(key)
        return v

    def get(self, key: str, default: Any = None) -> Any:
        v = self._raw.get(key)
        return default if v is None else v

    def getall(self, key: str) -> List[str]:
        return self._raw.getall(key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._raw.get(key) is not None

    def __setitem__(self, key: str, value: Any) -> None:
        self._writable().set(str(key), "" if value is None else str(value))

    def __delitem__(self, key: str) -> None:
        if not self._writable().clear(key):
            raise KeyError(key)

    def add(self, key: str, value: Any) -> None:
        """Append a parameter even if one of that name exists (Yate's ``addParam``)."""
        self._writable().add(str(key), "" if value is None else str(value))

    def copy(self) -> Message:
        """A detached copy (a plain :class:`Message`) that stays readable after ``ret()``."""
        m = Message(self._dispatcher, self.name, self._raw.params(), self.retvalue, self._id,
                    self._time)
        return m

    def __repr__(self) -> str:
        try:
            return (f"<EmbeddedMessage {self._raw.name()} id={self._id!r} "
                    f"retvalue={self._raw.retvalue()!r} {self._raw.params()}>")
        except MessageReleasedError:
            return f"<EmbeddedMessage {self._name} id={self._id!r} (released)>"

    __str__ = __repr__

    # -- answering -------------------------------------------------------------------------
    def ret(self, handled: bool = True, retValue: Optional[str] = None) -> None:
        """Answer this message to Yate (once) and release it.

        Raises :class:`MessageReleasedError` if it was already answered or Yate released it
        (timeout, shutdown): the answer could not be delivered.
        """
        disp: EmbeddedDispatcher = self._dispatcher     # type: ignore[assignment]
        disp._answer(self, bool(handled), retvalue=retValue)

    def dispatch(self) -> Deferred[bool]:
        return defer.fail(TypeError("a received message is answered with ret()"))

    def enqueue(self) -> None:
        raise TypeError("a received message is answered with ret()")


# --------------------------------------------------------------------------------------------
# The dispatcher
# --------------------------------------------------------------------------------------------

class EmbeddedDispatcher(Dispatcher):
    """The :class:`~yaypm.dispatcher.Dispatcher` API on Yate's in-process host.

    ``api`` is the ``_yaypmhost`` module (or a stand-in with the same functions); ``owner``
    identifies this dispatcher to the host (messages it sends do not come back to its own
    handlers or watches unless ``setlocal("reenter"/"selfwatch", True)``, as in extmodule);
    ``run_blocking(fn, *args) -> Deferred`` runs the host's blocking dispatch off the reactor
    thread.  Normally made by :func:`embeddedStart`.
    """

    log = Logger()

    def __init__(self, api: Any, owner: int, run_blocking: Callable[..., Deferred],
                 clock: Any = None, *, track_name: str = "yaypmhost",
                 default_priority: int = 100) -> None:
        super().__init__(clock, default_priority=default_priority, answer_deadline=None,
                         id_prefix="ye")
        self._api = api
        self.owner = owner
        self.track_name = track_name
        self._run_blocking = run_blocking
        self._hids: Dict[str, int] = {}
        self._wids: Dict[str, int] = {}
        self._watch_names: Dict[int, str] = {}
        self._timeout_ms = 0               # 0: the module's [general] timeout
        self._reenter = False
        self._selfwatch = False
        self._locals: Dict[str, str] = {}
        # Answers given while a message is being delivered, released to Yate once the app's
        # synchronous code for it has run (see _on_host_message)
        self._held: Optional[List[Tuple[EmbeddedMessage, bool]]] = None
        self._write = self._no_lines       # "connected" until close()
        self._generation = 1
        self.stats["late"] = 0
        api.set_options(owner, 0, False, False)

    def _no_lines(self, line: str) -> None:     # pragma: no cover - a bug if reached
        raise RuntimeError("EmbeddedDispatcher does not write extmodule lines")

    # -- installing: straight to the host ----------------------------------------------------
    def _send_install(self, inst: Any) -> None:
        try:
            hid = self._api.install(self.owner, inst.name, int(inst.priority),
                                    inst.filter_name, inst.filter_value, self.track_name)
        except Exception as e:
            self.log.error("Cannot install {name}: {error}", name=inst.name, error=str(e))
            ok = False
        else:
            self._hids[inst.name] = hid
            ok = True
        self._install_reply(P.InstallReply(int(inst.priority), inst.name, ok))

    def uninstall(self, name: str) -> Deferred[bool]:
        """Remove our Yate handler for ``name``; never waits for messages in flight."""
        self._installs.pop(name, None)
        hid = self._hids.pop(name, None)
        ok = False
        if hid is not None and self._write is not None:
            ok = bool(self._api.uninstall(hid))
        return defer.succeed(ok)

    def _send_watch(self, w: Any) -> None:
        try:
            wid = self._api.watch(self.owner, w.name)
        except Exception as e:
            self.log.error("Cannot watch {name}: {error}", name=w.name, error=str(e))
            ok = False
        else:
            self._wids[w.name] = wid
            self._watch_names[wid] = w.name
            ok = True
        self._watch_reply(P.WatchReply(w.name, ok))

    def unwatch(self, name: str) -> Deferred[bool]:
        self._watches.pop(name, None)
        wid = self._wids.pop(name, None)
        ok = False
        if wid is not None:
            self._watch_names.pop(wid, None)
            if self._write is not None:
                ok = bool(self._api.unwatch(wid))
        return defer.succeed(ok)

    # -- messages from Yate --------------------------------------------------------------------
    def _on_host_message(self, raw: Any) -> None:
        """A Yate thread waits for this message: answer it exactly once, whatever happens.

        An answer given while the app's callbacks for this message run synchronously is
        released to Yate when they return, so "``ret()``, then ``onwatch()``/``onmsg()`` for
        what Yate does next" cannot miss it (over TCP the lines arrive in that order too).
        """
        self.stats["received"] += 1
        m = EmbeddedMessage(self, raw)
        if m._answered:
            self.stats["late"] += 1     # Yate gave up before the reactor got to it
            return
        self._unanswered[m._id] = m
        if self.observer is not None:
            self.observer.message_received(m)
        held: List[Tuple[EmbeddedMessage, bool]] = []
        self._held = held
        try:
            self._route(m)
        finally:
            self._held = None
            for hm, handled in held:
                self._release(hm, handled, quiet=True)

    def _answer_for_app(self, m: Message, handled: bool) -> None:
        self._answer(m, handled, failed=True)     # quiet if Yate released it meanwhile

    def _arm_deadline(self, m: Message) -> None:
        pass                            # the host times out the Yate thread itself

    def _answer(self, m: Message, handled: bool, failed: bool = False,  # type: ignore[override]
                retvalue: Optional[str] = None) -> None:
        """Answer ``m``.  ``failed``: answered by the dispatcher, so a message Yate already
        released is no error; otherwise (the app's ``ret()``) that raises MessageReleasedError."""
        assert isinstance(m, EmbeddedMessage)
        if m._done:
            if failed:
                return
            raise MessageReleasedError(f"Yate message {m._id} ({m._name}) was already answered")
        try:
            if retvalue is not None:
                m._raw.set_retvalue(str(retvalue))
            elif not m._raw.alive:
                raise MessageReleasedError(
                    f"Yate message {m._id} is gone (timed out or host closing)")
        except MessageReleasedError:
            m._done = True
            self._unanswered.pop(m._id, None)
            if failed:
                return
            raise
        m._done = True
        self._unanswered.pop(m._id, None)
        if self.observer is not None:
            self.observer.message_answered(m)
        if self._held is not None:
            self._held.append((m, handled))
        else:
            self._release(m, handled, quiet=failed)

    def _release(self, m: EmbeddedMessage, handled: bool, quiet: bool) -> None:
        """Hand the answer to the waiting Yate thread."""
        try:
            m._raw.ret(handled)
        except MessageReleasedError:
            self.log.warn("{name} ({id}) was released by Yate before its answer",
                          name=m._name, id=m._id)
            if not quiet:
                raise
            return
        self.stats["answered"] += 1

    def _on_host_watch(self, wid: int, name: str, handled: bool, retval: str,
                       params: List[Tuple[str, str]]) -> None:
        """A notification (a copy: the message is gone) for the watch ``wid``."""
        watched = self._watch_names.get(wid)
        if watched is not None:
            self._notify_watchers(name, params, retval, handled, watched=watched)

    # -- messages to Yate ----------------------------------------------------------------------
    def _dispatch(self, m: Message) -> Deferred[bool]:
        if m._received:
            return defer.fail(TypeError("a received message is answered with ret()"))
        if self._write is None:
            return defer.fail(self._disconnect_reason)
        ident = self._next_id()
        m._id = ident
        params = [(k, v) for k, v in m._params if v is not None]
        def forget(_: Deferred) -> None:
            self._outstanding.pop(ident, None)
        d: Deferred[bool] = Deferred(forget)
        self._outstanding[ident] = (m, d)

        def done(result: Tuple[bool, str, str, List[Tuple[str, str]]]) -> None:
            if self._outstanding.pop(ident, None) is None:
                return                      # cancelled, or closed meanwhile
            handled, name, retval, new_params = result
            m._name = name
            m._retvalue = retval
            m._params = [[k, v] for k, v in new_params]
            m._processed = handled
            d.callback(handled)

        def failed(f: Failure) -> None:
            if self._outstanding.pop(ident, None) is None:
                return
            if f.check(RuntimeError) and self._write is None:
                f = Failure(self._disconnect_reason)
            d.errback(f)

        self._run_blocking(self._api.dispatch, self.owner, m._name, m._retvalue,
                           params).addCallbacks(done, failed)
        self.stats["dispatched"] += 1
        return d

    def _enqueue(self, m: Message) -> None:
        if self._write is None:
            raise self._disconnect_reason
        params = [(k, v) for k, v in m._params if v is not None]
        if not self._api.enqueue(self.owner, m._name, m._retvalue, params):
            raise YateError(f"Yate refused to enqueue {m._name!r}")
        self.stats["dispatched"] += 1

    def _send(self, line: str) -> None:
        raise RuntimeError("EmbeddedDispatcher does not write extmodule lines")

    # -- connection parameters -----------------------------------------------------------------
    def setlocal(self, name: str, value: Any = "") -> Deferred[str]:
        """extmodule's ``setlocal`` on the host: ``timeout`` (ms), ``reenter``, ``selfwatch``,
        ``engine.<param>``, ``config.<section>.<key>``, ``loaded.<module>``, ``runid``; other
        names are remembered and echoed (no effect in embedded mode)."""
        if isinstance(value, bool):
            value = "true" if value else "false"
        value = "" if value is None else str(value)
        try:
            result = self._setlocal(name, value)
        except Exception as e:
            return defer.fail(e)
        return defer.succeed(result)

    def _setlocal(self, name: str, value: str) -> str:
        api = self._api
        if name.startswith("engine."):
            v = api.run_params().get(name[7:])
            if value or v is None:
                raise YateError(f"setlocal {name} refused (value {value!r})")
            return v
        if name.startswith("config."):
            section, _, key = name[7:].partition(".")
            v = api.config(section.strip(), key.strip()) if key else None
            if value or v is None:
                raise YateError(f"setlocal {name} refused (value {value!r})")
            return v
        if name.startswith("loaded."):
            return "true" if api.plugin_loaded(name[7:]) else "false"
        if name == "runid":
            return api.run_params().get("runid", "")
        if name == "timeout":
            if value:
                self._timeout_ms = max(0, int(value))
                self._apply_options()
            return str(self._timeout_ms or api.stats()["timeout"])
        if name in ("reenter", "selfwatch"):
            if value:
                flag = value.lower() in ("true", "yes", "on", "enable", "1")
                if name == "reenter":
                    self._reenter = flag
                else:
                    self._selfwatch = flag
                self._apply_options()
            flag = self._reenter if name == "reenter" else self._selfwatch
            return "true" if flag else "false"
        if value:
            self._locals[name] = value
        return self._locals.get(name, "")

    def _apply_options(self) -> None:
        self._api.set_options(self.owner, self._timeout_ms, self._reenter, self._selfwatch)

    def run_params(self) -> Dict[str, str]:
        """Yate's run parameters (``Engine::runParams()``: nodename, runid, configpath...)."""
        return dict(self._api.run_params())

    def host_config(self, section: str, key: Optional[str] = None) -> Any:
        """A value (or, without ``key``, the pairs of a section) of ``yaypmhost.conf``."""
        return self._api.host_config(section, key)

    def output(self, text: str) -> None:
        """Write text to Yate's log (Yate's ``Output``)."""
        for part in str(text).splitlines() or [""]:
            self._api.output(part)

    def debug(self, level: int, text: str) -> None:
        """Log ``text`` at a Yate debug level (5 = warn ... 10 = all) as ``<yaypmhost:...>``."""
        self._api.debug(int(level), str(text))

    def quit(self) -> None:
        """Stop this dispatcher: its handlers and watches are removed from Yate."""
        self.close("quit")

    # -- life cycle ----------------------------------------------------------------------------
    def close(self, reason: str = "embedded dispatcher closed") -> None:
        """Remove every handler and watch from Yate and fail what waited (idempotent).

        Outstanding ``dispatch()`` Deferreds errback with DisconnectedException and later
        sends fail at once (as when a TCP connection drops); messages not yet answered are
        answered unhandled.  One-shot waits are dropped without firing: at shutdown an errback
        on every ``onmsg`` would only fill the log with unhandled errors.
        """
        if self._write is None:
            return
        self._write = None
        err = DisconnectedException(reason)
        self._disconnect_reason = err
        try:
            self._api.release_owner(self.owner)
        except Exception:
            self.log.failure("Releasing handlers of {owner}", owner=self.owner)
        self._installs.clear()
        self._watches.clear()
        self._hids.clear()
        self._wids.clear()
        self._watch_names.clear()
        unanswered, self._unanswered = self._unanswered, {}
        for m in unanswered.values():
            self._answer(m, False, failed=True)
        outstanding, self._outstanding = self._outstanding, {}
        for _, d in outstanding.values():
            d.errback(Failure(err))
        for table in (self._waiters, self._watch_waiters):
            for waits in list(table.values()):
                for w in list(waits):
                    self._remove_waiter(table, w)

    def pending_count(self) -> int:
        for ident, m in list(self._unanswered.items()):
            if m._answered:
                del self._unanswered[ident]
        return super().pending_count()


# --------------------------------------------------------------------------------------------
# The host: scripts, reactor thread, dispatch workers (runs inside Yate only)
# --------------------------------------------------------------------------------------------

class _Workers:
    """Threads that run the host's blocking calls (Yate's synchronous dispatch).

    Grows up to ``max_threads`` while every thread is busy; stopped with a bounded join.
    """

    def __init__(self, reactor: Any, max_threads: int = 8) -> None:
        self._reactor = reactor
        self._max = max(1, max_threads)
        self._queue: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._threads: List[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()
        self._stopped = False

    def run(self, fn: Callable[..., Any], *args: Any) -> Deferred:
        d: Deferred = Deferred()
        if self._stopped:
            d.errback(DisconnectedException("the yaypm host is stopping"))
            return d
        self._queue.put((fn, args, d))
        with self._lock:
            if self._idle == 0 and len(self._threads) < self._max:
                t = threading.Thread(target=self._work, daemon=True,
                                     name=f"yaypm-dispatch-{len(self._threads) + 1}")
                self._threads.append(t)
                t.start()
        return d

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            job = self._queue.get()
            with self._lock:
                self._idle -= 1
            if job is None:
                return
            fn, args, d = job
            try:
                result: Any = fn(*args)
                fire = d.callback
            except BaseException:
                result = Failure()
                fire = d.errback
            try:
                self._reactor.callFromThread(fire, result)
            except Exception:
                pass

    def stop(self, deadline: float) -> bool:
        self._stopped = True
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)


class _Script:
    __slots__ = ("name", "path", "mtime", "module", "dispatchers")

    def __init__(self, name: str, path: str, mtime: float) -> None:
        self.name = name
        self.path = path
        self.mtime = mtime
        self.module: Optional[types.ModuleType] = None
        self.dispatchers: List[EmbeddedDispatcher] = []


class _YateLogObserver:
    """twisted.logger events -> Yate's Debug (``<yaypmhost:LEVEL>``), failures with traceback."""

    _levels = {LogLevel.critical: _DEBUG_CRIT, LogLevel.error: _DEBUG_WARN,
               LogLevel.warn: _DEBUG_MILD, LogLevel.info: _DEBUG_CALL,
               LogLevel.debug: _DEBUG_ALL}

    def __init__(self, api: Any) -> None:
        self._api = api

    def __call__(self, event: Dict[str, Any]) -> None:
        level = self._levels.get(event.get("log_level"), _DEBUG_INFO)
        failure = event.get("log_failure")
        if failure is not None:
            level = _DEBUG_WARN        # log.failure() defaults to critical: a traceback is a warning
        try:
            if level > self._api.debug_level():
                return
            text = formatEvent(event)
            if failure is not None:
                text += "\n" + failure.getTraceback()
            ns = event.get("log_namespace", "")
            self._api.debug(level, f"[{ns}] {text}" if ns else text)
        except Exception:
            pass


class _Host:
    """What ``yaypmhost.yate`` talks to: loads scripts, runs the reactor, routes messages."""

    def __init__(self, api: Any, settings: Dict[str, Any]) -> None:
        from twisted.internet import reactor
        self.api = api
        self.reactor = reactor
        general = dict(settings.get("general") or ())
        self.workers = _Workers(reactor, int(general.get("threads", "8") or 8))
        self.default_priority = int(general.get("priority", "100") or 100)
        self.dispatchers: Dict[int, EmbeddedDispatcher] = {}
        self.scripts: Dict[str, _Script] = {}
        self._owners = itertools.count(1)
        self._loading: Optional[_Script] = None
        self._stopping = False
        self.thread: Optional[threading.Thread] = None
        self._real_run = type(reactor).run.__get__(reactor)
        api.register(self.on_message, self.on_watch, reactor.callFromThread,
                     MessageReleasedError)

    # -- from Yate (reactor thread, via callFromThread) ----------------------------------------
    def on_message(self, owner: int, raw: Any) -> None:
        d = self.dispatchers.get(owner)
        try:
            if d is not None and d._write is not None:
                d._on_host_message(raw)
                return
        except BaseException:
            log.failure("Dispatching a Yate message to Python failed")
        try:
            if raw.alive:
                raw.ret(False)
        except MessageReleasedError:
            pass

    def on_watch(self, owner: int, wid: int, name: str, handled: bool, retval: str,
                 params: List[Tuple[str, str]]) -> None:
        d = self.dispatchers.get(owner)
        if d is None or d._write is None:
            return
        try:
            d._on_host_watch(wid, name, handled, retval, params)
        except BaseException:
            log.failure("Delivering a notification of {name} failed", name=name)

    # -- apps ----------------------------------------------------------------------------------
    def start_app(self, start: Callable[..., Any], args: tuple,
                  kwargs: Dict[str, Any]) -> EmbeddedDispatcher:
        script = self._loading
        track = f"yaypm/{script.name}" if script is not None else "yaypmhost"
        owner = next(self._owners)
        d = EmbeddedDispatcher(self.api, owner, self.workers.run, self.reactor,
                               track_name=track, default_priority=self.default_priority)
        self.dispatchers[owner] = d
        if script is not None:
            script.dispatchers.append(d)

        def run() -> None:
            if d._write is None:
                return
            try:
                result = start(d, *args, **kwargs)
                if isinstance(result, Deferred):
                    result.addErrback(lambda f: log.failure("start() of {track} failed", f,
                                                            track=track))
            except Exception:
                log.failure("start() of {track} raised", track=track)

        if self.reactor.running:
            self.reactor.callLater(0, run)
        else:
            self.reactor.callWhenRunning(run)
        return d

    # -- scripts -------------------------------------------------------------------------------
    def load(self, scripts: List[Tuple[str, str]]) -> None:
        """Start new or changed scripts, stop removed ones (reactor thread or before it runs)."""
        wanted: Dict[str, str] = {}
        for name, path in scripts:
            wanted[name] = os.path.abspath(os.path.expanduser(path))
        for name in list(self.scripts):
            s = self.scripts[name]
            if wanted.get(name) != s.path or self._mtime(s.path) != s.mtime:
                self._stop_script(s, "script removed or changed")
        for name, path in wanted.items():
            if name not in self.scripts:
                self._run_script(name, path)

    @staticmethod
    def _mtime(path: str) -> float:
        try:
            return os.stat(path).st_mtime
        except OSError:
            return -1.0

    def _run_script(self, name: str, path: str) -> None:
        script = _Script(name, path, self._mtime(path))
        self.scripts[name] = script
        mod = types.ModuleType(EMBEDDED_MODULE_NAME)
        mod.__file__ = path
        mod.__builtins__ = builtins                     # type: ignore[attr-defined]
        script.module = mod
        folder = os.path.dirname(path)
        if folder and folder not in sys.path:
            sys.path.insert(0, folder)
        self._loading = script
        try:
            with open(path, "rb") as f:
                code = compile(f.read(), path, "exec")
            exec(code, mod.__dict__)
        except BaseException:          # SystemExit included: it must not end Yate
            log.failure("Script {name} ({path}) failed", name=name, path=path)
        else:
            log.info("Script {name} loaded from {path}", name=name, path=path)
        finally:
            self._loading = None

    def _stop_script(self, script: _Script, reason: str) -> None:
        self.scripts.pop(script.name, None)
        for d in script.dispatchers:
            self.dispatchers.pop(d.owner, None)
            d.close(reason)
        script.dispatchers.clear()
        log.info("Script {name} stopped ({reason})", name=script.name, reason=reason)

    # -- reactor -------------------------------------------------------------------------------
    def start_reactor(self) -> None:
        self.thread = threading.Thread(target=self._run_reactor, name="yaypm-reactor",
                                       daemon=True)
        self.thread.start()

    def _run_reactor(self) -> None:
        try:
            self._real_run(installSignalHandlers=False)
        except BaseException:
            log.failure("The reactor failed")
        if not self._stopping:
            # An app stopped the reactor: nothing could answer Yate any more, so let go.
            self.api.debug(_DEBUG_WARN, "The Twisted reactor stopped: removing every yaypm "
                                        "handler (restart Yate to run the scripts again)")
            self._close_all("reactor stopped")

    def _close_all(self, reason: str) -> None:
        for d in list(self.dispatchers.values()):
            try:
                d.close(reason)
            except Exception:
                log.failure("Closing a dispatcher")
        self.dispatchers.clear()

    def call_in_reactor(self, fn: Callable[..., Any], *args: Any, timeout: float = 30.0) -> Any:
        """Run ``fn`` on the reactor thread and wait for it (GIL released while waiting)."""
        if self.thread is None or not self.thread.is_alive() or not self.reactor.running:
            return fn(*args)
        done = threading.Event()
        box: List[Any] = []

        def call() -> None:
            try:
                box.append(fn(*args))
            except BaseException:
                log.failure("Call in the reactor failed")
            finally:
                done.set()
        self.reactor.callFromThread(call)
        if not done.wait(timeout):
            raise TimeoutError(f"the reactor did not run {fn!r} within {timeout} s")
        return box[0] if box else None

    # -- called by the C++ module (with the GIL, a Yate thread) ---------------------------------
    def reload(self, settings: Dict[str, Any]) -> None:
        self.call_in_reactor(self.load, list(settings.get("scripts") or ()))

    def stop(self, timeout: float = 3.0) -> bool:
        """Stop the scripts, the reactor and our threads; True if Python may be finalized."""
        self._stopping = True
        deadline = time.monotonic() + max(0.5, timeout)
        thread = self.thread
        if thread is not None and thread.is_alive():
            def shutdown() -> None:
                try:
                    self._close_all("Yate is shutting down")
                finally:
                    if self.reactor.running:
                        self.reactor.stop()
            self.reactor.callFromThread(shutdown)
            thread.join(max(0.0, deadline - time.monotonic()))
        else:
            self._close_all("Yate is shutting down")
        clean = thread is None or not thread.is_alive()
        if not clean:
            self.api.debug(_DEBUG_WARN, "The reactor thread did not stop in time")
        if not self.workers.stop(deadline):
            self.api.debug(_DEBUG_WARN, "A dispatch thread is still inside Yate")
            clean = False
        main = threading.main_thread()
        while True:
            others = [t for t in threading.enumerate()
                      if t is not main and t is not threading.current_thread()
                      and not t.daemon and t.is_alive()]
            if not others or time.monotonic() >= deadline:
                break
            others[0].join(max(0.0, min(0.1, deadline - time.monotonic())))
        if others:
            self.api.debug(_DEBUG_WARN, "Python threads still running: "
                           + ", ".join(t.name for t in others))
            clean = False
        return clean


_host: Optional[_Host] = None


def _host_main(settings: Dict[str, Any]) -> _Host:
    """Entry point of ``yaypmhost.yate`` (first ``initialize()``, Yate's main thread, GIL held).

    Routes twisted.logger to Yate's log, makes ``reactor.run()`` a no-op for the scripts, runs
    the scripts on this thread, then starts the reactor in its own thread.
    """
    global _host
    if _yaypmhost is None:
        raise RuntimeError("_yaypmhost is missing: not running inside Yate")
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner
    globalLogBeginner.beginLoggingTo([_YateLogObserver(_yaypmhost)], discardBuffer=True,
                                     redirectStandardIO=False)
    host = _host = _Host(_yaypmhost, settings)

    def run(*args: Any, **kwargs: Any) -> None:
        """Scripts end with reactor.run(); inside Yate the host already runs the reactor."""
    reactor.run = run                  # type: ignore[method-assign,misc]
    host.load(list(settings.get("scripts") or ()))
    host.start_reactor()
    return host


# --------------------------------------------------------------------------------------------
# The YAYPM entry points
# --------------------------------------------------------------------------------------------

def embeddedStart(start: Callable[..., Any], *args: Any, **kwargs: Any) -> EmbeddedDispatcher:
    """Run ``start(dispatcher, *args, **kwargs)`` once Yate's reactor runs; returns the
    dispatcher.  Call it from a script run by ``yaypmhost`` (``__name__ ==
    "__embedded_yaypm_module__"``); each call makes one dispatcher, like one TCP connection.
    """
    if _host is None:
        raise RuntimeError("embeddedStart() works only in a script run by Yate's yaypmhost "
                           "module (__name__ == '__embedded_yaypm_module__')")
    return _host.start_app(start, args, kwargs)


#: The original YAYPM spelling.
embededStart = embeddedStart


def host_stats() -> Dict[str, int]:
    """Counters of the host (handlers, watches, pending, answered, timeouts, received)."""
    if _yaypmhost is None:
        raise RuntimeError("not running inside Yate")
    return dict(_yaypmhost.stats())
