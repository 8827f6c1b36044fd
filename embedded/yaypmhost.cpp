/**
 * yaypmhost.cpp
 * yaypm embedded mode: a Yate module hosting one CPython interpreter.
 *
 * The module starts the interpreter on the first initialize() (Yate's main thread), runs the
 * scripts of yaypmhost.conf [scripts] as "__embedded_yaypm_module__" and gives Python a thin
 * host API, the C extension module _yaypmhost: install/uninstall handlers (MessageRelay, one
 * receiver, int ids), watch (one MessagePostHook per watched name), dispatch/enqueue, engine
 * settings, logging.  Every piece of yaypm logic lives in the Python wrapper yaypm/embedded.py.
 *
 * Threads (see embedded/README.md):
 *  - Twisted's reactor runs in its own Python thread; all application code runs there.
 *  - A Yate thread calling a Python handler wraps the live Message in a proxy bound to a
 *    ref-counted Pending record, hands it to the reactor with reactor.callFromThread, releases
 *    the GIL and waits on the record's semaphore with the handler timeout.  The answer (or the
 *    timeout, or engine.halt) clears the record's Message pointer under its mutex: a proxy used
 *    afterwards raises MessageReleasedError and never touches freed memory.
 *  - Lock order: GIL -> s_mutex -> Pending::m_mutex / Yate's internal locks.  A thread holding
 *    s_mutex or a Pending mutex never waits for the GIL.
 *  - Every entry from a Yate thread passes a gate (s_alive + in-flight counter) checked before
 *    taking the GIL, so nothing enters Python while it is being finalized.
 *
 * No Python exception crosses into C++: every call result is checked, errors are formatted with
 * the traceback module and logged through Debug.
 */

#include <Python.h>
#include <yatephone.h>
#include <yateversn.h>

#include <dlfcn.h>
#include <pthread.h>
#include <string.h>

#ifndef PYLIB_SONAME
#define PYLIB_SONAME 0
#endif
#ifndef PY_EXECUTABLE
#define PY_EXECUTABLE 0
#endif

using namespace TelEngine;
namespace { // anonymous

class YaypmHost;
class Pending;

// A message sent by Python: remembers which script (owner) sent it, for reenter/selfwatch
class HostMessage : public Message
{
    YCLASS(HostMessage,Message)
public:
    inline HostMessage(const char* name, const char* retval, bool broadcast, int owner)
	: Message(name,retval,broadcast), m_owner(owner)
	{ }
    inline int owner() const
	{ return m_owner; }
private:
    int m_owner;
};

// One Python handler: the relay Yate calls and what received() needs to know
class HandlerEntry : public GenObject
{
public:
    inline HandlerEntry(int id, int owner, MessageRelay* relay)
	: m_id(id), m_owner(owner), m_relay(relay)
	{ }
    int m_id;
    int m_owner;
    MessageRelay* m_relay;
};

// Options of one owner (one EmbeddedDispatcher, i.e. one script)
class OwnerEntry : public GenObject
{
public:
    inline OwnerEntry(int owner)
	: m_owner(owner), m_timeout(0), m_reenter(false), m_selfWatch(false)
	{ }
    int m_owner;
    unsigned int m_timeout;	// ms, 0 = module default
    bool m_reenter;
    bool m_selfWatch;
};

// Post-dispatch hook for one watched name ("" = every message) of one owner
class WatchHook : public MessagePostHook
{
public:
    WatchHook(int id, int owner, const String& name);
    virtual void dispatched(const Message& msg, bool handled);
    int m_id;
    int m_owner;
    bool m_active;
};

// Receives every relayed Python handler call, by id
class RelayReceiver : public MessageReceiver
{
public:
    virtual bool received(Message& msg, int id);
};

// A message handed to Python, waited for by one Yate thread
class Pending : public RefObject
{
public:
    inline Pending(Message* msg, int hid, int owner)
	: m_mutex(false,"YaypmPending"), m_sem(1,"YaypmAnswer",0),
	  m_msg(msg), m_copy(0), m_hid(hid), m_owner(owner), m_answered(false), m_handled(false)
	{ }
    virtual ~Pending()
	{ TelEngine::destruct(m_copy); }
    // Release without an answer (timeout, halt); true if it was still held
    bool release();
    Mutex m_mutex;
    Semaphore m_sem;
    Message* m_msg;		// valid only while non-NULL, read and cleared under m_mutex
    NamedList* m_copy;		// read-only snapshot taken when Python answered (ret)
    String m_copyRet;		// the return value in that snapshot
    int m_hid;
    int m_owner;
    bool m_answered;
    bool m_handled;
};

class HaltHandler : public MessageHandler
{
public:
    inline HaltHandler(unsigned int prio)
	: MessageHandler("engine.halt",prio,"yaypmhost")
	{ }
    virtual bool received(Message& msg);
};

class YaypmHost : public Module
{
public:
    YaypmHost();
    virtual ~YaypmHost();
    virtual void initialize();
    void halt();
protected:
    virtual void statusParams(String& str);
private:
    bool startPython(const NamedList& general, PyObject* settings);
    PyObject* buildSettings(Configuration& cfg);
    bool m_first;
};

INIT_PLUGIN(YaypmHost);

// ------------------------------------------------------------------------------------------
// Shared state

static Mutex s_mutex(false,"YaypmHost");	// registries, gate, counters
static ObjList s_handlers;			// HandlerEntry
static ObjList s_hooks;				// WatchHook (not owned: one ref each)
static ObjList s_owners;			// OwnerEntry
static ObjList s_pending;			// Pending (not owned)
static bool s_alive = false;			// gate: Python may be entered from Yate threads
static int s_inflight = 0;			// Yate threads between gate enter and leave
static int s_nextId = 1;
static unsigned int s_timeout = 10000;		// ms a Yate thread waits for a Python handler
static unsigned int s_answered = 0;
static unsigned int s_timedOut = 0;
static unsigned int s_received = 0;
static Configuration s_cfg;			// yaypmhost.conf; initialize() threads only
static ObjList s_hostSections;			// copies of its sections for Python, under s_mutex
static double s_stopTimeout = 3.0;

static bool s_pyStarted = false;		// Py_Initialize* was called (never again)
static bool s_halted = false;
static PyThreadState* s_mainState = 0;
static pthread_t s_initThread;
static HaltHandler* s_haltHandler = 0;
static RelayReceiver s_receiver;

// Python objects; touched only with the GIL
static PyObject* s_host = 0;			// yaypm.embedded host object (load/stop)
static PyObject* s_onMessage = 0;		// callable(owner, raw)
static PyObject* s_onWatch = 0;			// callable(owner, wid, name, handled, retval, params)
static PyObject* s_callFromThread = 0;		// reactor.callFromThread
static PyObject* s_releasedError = 0;		// MessageReleasedError class
static PyObject* s_rawType = 0;			// RawMessage heap type

static bool gateEnter()
{
    Lock lck(s_mutex);
    if (!s_alive)
	return false;
    s_inflight++;
    return true;
}

static void gateLeave()
{
    Lock lck(s_mutex);
    s_inflight--;
}

// Caller holds s_mutex
static OwnerEntry* findOwner(int owner, bool create = false)
{
    for (ObjList* o = s_owners.skipNull(); o; o = o->skipNext()) {
	OwnerEntry* e = static_cast<OwnerEntry*>(o->get());
	if (e->m_owner == owner)
	    return e;
    }
    if (!create)
	return 0;
    OwnerEntry* e = new OwnerEntry(owner);
    s_owners.append(e);
    return e;
}

// ------------------------------------------------------------------------------------------
// Python helpers (all with the GIL held)

// Log the pending Python exception with its traceback, then clear it
static void logPyError(const char* what)
{
    PyObject* type = 0;
    PyObject* value = 0;
    PyObject* tb = 0;
    PyErr_Fetch(&type,&value,&tb);
    if (!type) {
	Debug(&__plugin,DebugWarn,"%s failed (no Python exception set)",what);
	return;
    }
    PyErr_NormalizeException(&type,&value,&tb);
    if (tb && value)
	PyException_SetTraceback(value,tb);
    String text;
    PyObject* mod = PyImport_ImportModule("traceback");
    PyObject* lines = mod ? PyObject_CallMethod(mod,"format_exception","OOO",
	type,value ? value : Py_None,tb ? tb : Py_None) : 0;
    PyObject* sep = lines ? PyUnicode_FromString("") : 0;
    PyObject* joined = sep ? PyUnicode_Join(sep,lines) : 0;
    const char* s = joined ? PyUnicode_AsUTF8(joined) : 0;
    if (s)
	text = s;
    else {
	PyErr_Clear();
	PyObject* str = value ? PyObject_Str(value) : 0;
	const char* vs = str ? PyUnicode_AsUTF8(str) : 0;
	text << ((PyTypeObject*)type)->tp_name << ": " << (vs ? vs : "?");
	Py_XDECREF(str);
	PyErr_Clear();
    }
    Py_XDECREF(joined);
    Py_XDECREF(sep);
    Py_XDECREF(lines);
    Py_XDECREF(mod);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    PyErr_Clear();
    Debug(&__plugin,DebugWarn,"%s: %s",what,text.trimBlanks().safe());
}

static inline PyObject* pyStr(const String& s)
{
    return PyUnicode_DecodeUTF8(s.safe(),s.length(),"surrogateescape");
}

// Python str (or None) -> UTF-8 String; false with an exception set on error
static bool toStr(PyObject* obj, String& out, bool noneOk = true)
{
    if (obj == Py_None && noneOk) {
	out.clear();
	return true;
    }
    if (!PyUnicode_Check(obj)) {
	PyErr_Format(PyExc_TypeError,"expected str, got %s",Py_TYPE(obj)->tp_name);
	return false;
    }
    PyObject* b = PyUnicode_AsEncodedString(obj,"utf-8","surrogateescape");
    if (!b)
	return false;
    out.assign(PyBytes_AS_STRING(b),PyBytes_GET_SIZE(b));
    Py_DECREF(b);
    return true;
}

static PyObject* pyParams(const NamedList& list)
{
    unsigned int n = list.length();
    PyObject* out = PyList_New(0);
    if (!out)
	return 0;
    for (unsigned int i = 0; i < n; i++) {
	const NamedString* s = list.getParam(i);
	if (!s)
	    continue;
	PyObject* pair = Py_BuildValue("(NN)",pyStr(s->name()),pyStr(*s));
	if (!pair || PyList_Append(out,pair) < 0) {
	    Py_XDECREF(pair);
	    Py_DECREF(out);
	    return 0;
	}
	Py_DECREF(pair);
    }
    return out;
}

// Iterable of (key, value) pairs -> parameters of list
static bool fillParams(NamedList& list, PyObject* params)
{
    if (params == Py_None)
	return true;
    PyObject* it = PyObject_GetIter(params);
    if (!it)
	return false;
    PyObject* item;
    while ((item = PyIter_Next(it))) {
	PyObject* k = 0;
	PyObject* v = 0;
	String ks, vs;
	bool ok = PyTuple_Check(item) && PyTuple_GET_SIZE(item) == 2;
	if (ok) {
	    k = PyTuple_GET_ITEM(item,0);
	    v = PyTuple_GET_ITEM(item,1);
	}
	else if (PyList_Check(item) && PyList_GET_SIZE(item) == 2) {
	    ok = true;
	    k = PyList_GET_ITEM(item,0);
	    v = PyList_GET_ITEM(item,1);
	}
	if (!ok)
	    PyErr_SetString(PyExc_TypeError,"parameters must be (name, value) pairs");
	else
	    ok = toStr(k,ks,false) && toStr(v,vs);
	Py_DECREF(item);
	if (!ok) {
	    Py_DECREF(it);
	    return false;
	}
	if (v != Py_None)
	    list.addParam(ks,vs);
    }
    Py_DECREF(it);
    return !PyErr_Occurred();
}

// ------------------------------------------------------------------------------------------
// RawMessage: Python's view of a live Yate message held by a Pending record

typedef struct {
    PyObject_HEAD
    Pending* pending;
    PyObject* ident;
    long long time;
    int hid;
    bool broadcast;
} RawMessage;

// Caller holds the record's mutex; it is dropped here
static PyObject* raiseReleased(RawMessage* self, Lock& lck)
{
    bool answered = self->pending->m_answered;
    lck.drop();
    PyObject* cls = s_releasedError ? s_releasedError : PyExc_RuntimeError;
    if (answered)
	PyErr_Format(cls,"Yate message %U was answered: it can no longer be changed",
	    self->ident);
    else
	PyErr_Format(cls,"Yate message %U is gone (timed out or host closing)",self->ident);
    return 0;
}

// Lock the record and bind 'msg' (the live message), or raise MessageReleasedError
#define LOCK_MSG(self) \
    Lock _lck(self->pending->m_mutex); \
    Message* msg = self->pending->m_msg; \
    if (!msg) return raiseReleased(self,_lck);

// Lock the record and bind 'msg' (the live message, or the snapshot left by ret()) for reading
#define LOCK_READ(self) \
    Lock _lck(self->pending->m_mutex); \
    const NamedList* msg = self->pending->m_msg; \
    if (!msg) msg = self->pending->m_copy; \
    if (!msg) return raiseReleased(self,_lck);

static void raw_dealloc(PyObject* obj)
{
    RawMessage* self = (RawMessage*)obj;
    PyTypeObject* tp = Py_TYPE(obj);
    Py_CLEAR(self->ident);
    if (self->pending) {
	Pending* p = self->pending;
	self->pending = 0;
	p->deref();
    }
    tp->tp_free(obj);
    Py_DECREF(tp);
}

static PyObject* raw_name(RawMessage* self, PyObject*)
{
    String s;
    {
	LOCK_READ(self);
	s = *msg;
    }
    return pyStr(s);
}

static PyObject* raw_set_name(RawMessage* self, PyObject* arg)
{
    String s;
    if (!toStr(arg,s,false))
	return 0;
    if (s.null())
	return PyErr_Format(PyExc_ValueError,"a message name cannot be empty");
    LOCK_MSG(self);
    msg->assign(s);
    Py_RETURN_NONE;
}

static PyObject* raw_retvalue(RawMessage* self, PyObject*)
{
    String s;
    {
	LOCK_READ(self);
	s = self->pending->m_msg ? self->pending->m_msg->retValue() : self->pending->m_copyRet;
    }
    return pyStr(s);
}

static PyObject* raw_set_retvalue(RawMessage* self, PyObject* arg)
{
    String s;
    if (!toStr(arg,s))
	return 0;
    LOCK_MSG(self);
    msg->retValue() = s;
    Py_RETURN_NONE;
}

static PyObject* raw_get(RawMessage* self, PyObject* arg)
{
    String key;
    if (!toStr(arg,key,false))
	return 0;
    String val;
    bool found = false;
    {
	LOCK_READ(self);
	const NamedString* ns = msg->getParam(key);
	if (ns) {
	    found = true;
	    val = *ns;
	}
    }
    if (!found)
	Py_RETURN_NONE;
    return pyStr(val);
}

static PyObject* raw_getall(RawMessage* self, PyObject* arg)
{
    String key;
    if (!toStr(arg,key,false))
	return 0;
    NamedList copy("");
    {
	LOCK_READ(self);
	unsigned int n = msg->length();
	for (unsigned int i = 0; i < n; i++) {
	    const NamedString* s = msg->getParam(i);
	    if (s && s->name() == key)
		copy.addParam(s->name(),*s);
	}
    }
    PyObject* out = PyList_New(0);
    for (unsigned int i = 0; out && i < copy.length(); i++) {
	PyObject* v = pyStr(*copy.getParam(i));
	if (!v || PyList_Append(out,v) < 0) {
	    Py_XDECREF(v);
	    Py_CLEAR(out);
	    break;
	}
	Py_DECREF(v);
    }
    return out;
}

static PyObject* raw_params(RawMessage* self, PyObject*)
{
    NamedList copy("");
    {
	LOCK_READ(self);
	copy.copyParams(*msg);
    }
    return pyParams(copy);
}

static PyObject* raw_set(RawMessage* self, PyObject* args)
{
    PyObject* k;
    PyObject* v;
    if (!PyArg_ParseTuple(args,"UO:set",&k,&v))
	return 0;
    String ks, vs;
    if (!toStr(k,ks,false) || !toStr(v,vs))
	return 0;
    LOCK_MSG(self);
    msg->setParam(ks,vs);
    Py_RETURN_NONE;
}

static PyObject* raw_add(RawMessage* self, PyObject* args)
{
    PyObject* k;
    PyObject* v;
    if (!PyArg_ParseTuple(args,"UO:add",&k,&v))
	return 0;
    String ks, vs;
    if (!toStr(k,ks,false) || !toStr(v,vs))
	return 0;
    LOCK_MSG(self);
    msg->addParam(ks,vs);
    Py_RETURN_NONE;
}

static PyObject* raw_clear(RawMessage* self, PyObject* arg)
{
    String key;
    if (!toStr(arg,key,false))
	return 0;
    bool had;
    {
	LOCK_MSG(self);
	had = msg->getParam(key) != 0;
	if (had)
	    msg->clearParam(key);
    }
    return PyBool_FromLong(had);
}

// ret(handled, retvalue=None): answer and release the message, once
static PyObject* raw_ret(RawMessage* self, PyObject* args)
{
    int handled = 1;
    PyObject* rv = Py_None;
    if (!PyArg_ParseTuple(args,"|pO:ret",&handled,&rv))
	return 0;
    String rvs;
    if (rv != Py_None && !toStr(rv,rvs))
	return 0;
    Pending* p = self->pending;
    Lock lck(p->m_mutex);
    if (!p->m_msg)
	return raiseReleased(self,lck);
    if (rv != Py_None)
	p->m_msg->retValue() = rvs;
    // Reads after ret() see the final state (as over TCP); writes raise
    p->m_copy = new NamedList(*p->m_msg);
    p->m_copyRet = p->m_msg->retValue();
    p->m_msg = 0;
    p->m_answered = true;
    p->m_handled = handled != 0;
    lck.drop();
    p->m_sem.unlock();
    Py_RETURN_NONE;
}

static PyObject* raw_get_alive(RawMessage* self, void*)
{
    Lock lck(self->pending->m_mutex);
    bool alive = self->pending->m_msg != 0;
    lck.drop();
    return PyBool_FromLong(alive);
}

static PyObject* raw_get_answered(RawMessage* self, void*)
{
    Lock lck(self->pending->m_mutex);
    bool a = self->pending->m_answered;
    lck.drop();
    return PyBool_FromLong(a);
}

static PyObject* raw_get_id(RawMessage* self, void*)
{
    Py_INCREF(self->ident);
    return self->ident;
}

static PyObject* raw_get_time(RawMessage* self, void*)
{
    return PyLong_FromLongLong(self->time);
}

static PyObject* raw_get_broadcast(RawMessage* self, void*)
{
    return PyBool_FromLong(self->broadcast);
}

static PyObject* raw_get_hid(RawMessage* self, void*)
{
    return PyLong_FromLong(self->hid);
}

static PyMethodDef raw_methods[] = {
    {"name", (PyCFunction)raw_name, METH_NOARGS, "The message name."},
    {"set_name", (PyCFunction)raw_set_name, METH_O, "Rename the message."},
    {"retvalue", (PyCFunction)raw_retvalue, METH_NOARGS, "The return value."},
    {"set_retvalue", (PyCFunction)raw_set_retvalue, METH_O, "Set the return value."},
    {"get", (PyCFunction)raw_get, METH_O, "First value of a parameter, or None."},
    {"getall", (PyCFunction)raw_getall, METH_O, "Every value of a parameter."},
    {"params", (PyCFunction)raw_params, METH_NOARGS, "All parameters as (name, value) pairs."},
    {"set", (PyCFunction)raw_set, METH_VARARGS, "Replace (or add) a parameter."},
    {"add", (PyCFunction)raw_add, METH_VARARGS, "Append a parameter (duplicates allowed)."},
    {"clear", (PyCFunction)raw_clear, METH_O, "Remove a parameter; True if it existed."},
    {"ret", (PyCFunction)raw_ret, METH_VARARGS, "Answer the message (once) and release it."},
    {0, 0, 0, 0}
};

static PyGetSetDef raw_getset[] = {
    {(char*)"alive", (getter)raw_get_alive, 0, (char*)"Yate still holds the message.", 0},
    {(char*)"answered", (getter)raw_get_answered, 0, (char*)"Answered by Python.", 0},
    {(char*)"id", (getter)raw_get_id, 0, (char*)"An id for logs.", 0},
    {(char*)"time", (getter)raw_get_time, 0, (char*)"Creation time (s).", 0},
    {(char*)"broadcast", (getter)raw_get_broadcast, 0, (char*)"Broadcast message.", 0},
    {(char*)"handler_id", (getter)raw_get_hid, 0, (char*)"Handler id.", 0},
    {0, 0, 0, 0, 0}
};

static PyType_Slot raw_slots[] = {
    {Py_tp_dealloc, (void*)raw_dealloc},
    {Py_tp_methods, (void*)raw_methods},
    {Py_tp_getset, (void*)raw_getset},
    {Py_tp_doc, (void*)"A live Yate message handed to a Python handler (internal)."},
    {0, 0}
};

static PyType_Spec raw_spec = {
    "_yaypmhost.RawMessage", sizeof(RawMessage), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION, raw_slots
};

static PyObject* newRaw(Pending* p, const Message& msg)
{
    PyTypeObject* tp = (PyTypeObject*)s_rawType;
    RawMessage* self = (RawMessage*)tp->tp_alloc(tp,0);
    if (!self)
	return 0;
    char buf[64];
    ::snprintf(buf,sizeof(buf),"%p.%u",p,++s_received);
    self->ident = PyUnicode_FromString(buf);
    if (!self->ident) {
	Py_DECREF(self);
	return 0;
    }
    p->ref();
    self->pending = p;
    self->time = (long long)msg.msgTime().sec();
    self->hid = p->m_hid;
    self->broadcast = msg.broadcast();
    return (PyObject*)self;
}

// ------------------------------------------------------------------------------------------
// Pending

bool Pending::release()
{
    Lock lck(m_mutex);
    bool held = m_msg != 0;
    m_msg = 0;
    lck.drop();
    m_sem.unlock();
    return held;
}

// ------------------------------------------------------------------------------------------
// Yate -> Python

// Hand a message to the reactor; false if it could not be handed over
static bool deliver(Pending* p, Message& msg)
{
    PyGILState_STATE g = PyGILState_Ensure();
    bool ok = false;
    if (s_callFromThread && s_onMessage) {
	PyObject* raw = newRaw(p,msg);
	PyObject* r = raw ? PyObject_CallFunction(s_callFromThread,"OiO",s_onMessage,p->m_owner,raw) : 0;
	if (r)
	    ok = true;
	else
	    logPyError("Handing a message to the reactor");
	Py_XDECREF(r);
	Py_XDECREF(raw);
    }
    PyGILState_Release(g);
    return ok;
}

bool RelayReceiver::received(Message& msg, int id)
{
    unsigned int timeout = 0;
    Pending* p = 0;
    {
	Lock lck(s_mutex);
	if (!s_alive)
	    return false;
	HandlerEntry* h = 0;
	for (ObjList* o = s_handlers.skipNull(); o; o = o->skipNext()) {
	    HandlerEntry* e = static_cast<HandlerEntry*>(o->get());
	    if (e->m_id == id) {
		h = e;
		break;
	    }
	}
	if (!h)
	    return false;
	OwnerEntry* own = findOwner(h->m_owner);
	if (!(own && own->m_reenter)) {
	    HostMessage* hm = YOBJECT(HostMessage,&msg);
	    if (hm && hm->owner() == h->m_owner)
		return false;
	}
	timeout = (own && own->m_timeout) ? own->m_timeout : s_timeout;
	p = new Pending(&msg,id,h->m_owner);
	s_pending.append(p)->setDelete(false);
	s_inflight++;
    }
    bool handled = false;
    if (deliver(p,msg)) {
	p->m_sem.lock((long)timeout * 1000);
	Lock lck(p->m_mutex);
	if (p->m_msg) {
	    // nobody answered in time: release it unhandled
	    p->m_msg = 0;
	    lck.drop();
	    Lock lck2(s_mutex);
	    s_timedOut++;
	    lck2.drop();
	    Debug(&__plugin,DebugWarn,"Python did not answer '%s' in %u ms: not handled",
		msg.c_str(),timeout);
	}
	else
	    handled = p->m_answered && p->m_handled;
    }
    else
	p->release();
    Lock lck(s_mutex);
    s_pending.remove(p,false);
    if (p->m_answered)
	s_answered++;
    s_inflight--;
    lck.drop();
    p->deref();
    return handled;
}

WatchHook::WatchHook(int id, int owner, const String& name)
    : m_id(id), m_owner(owner), m_active(true)
{
    if (name)
	setMsgFilter(new MatchingItemString("",name));
}

void WatchHook::dispatched(const Message& msg, bool handled)
{
    {
	Lock lck(s_mutex);
	if (!(s_alive && m_active))
	    return;
	OwnerEntry* own = findOwner(m_owner);
	if (!(own && own->m_selfWatch)) {
	    HostMessage* hm = YOBJECT(HostMessage,&msg);
	    if (hm && hm->owner() == m_owner)
		return;
	}
	s_inflight++;
    }
    // The message is read-only and valid only during this call: snapshot it
    NamedList copy("");
    copy.copyParams(msg);
    String name(msg);
    String retval(msg.retValue());
    PyGILState_STATE g = PyGILState_Ensure();
    if (s_callFromThread && s_onWatch) {
	PyObject* r = PyObject_CallFunction(s_callFromThread,"OiiNONN",s_onWatch,m_owner,m_id,
	    pyStr(name),handled ? Py_True : Py_False,pyStr(retval),pyParams(copy));
	if (!r)
	    logPyError("Handing a notification to the reactor");
	Py_XDECREF(r);
    }
    PyGILState_Release(g);
    gateLeave();
}

// ------------------------------------------------------------------------------------------
// The _yaypmhost module (called from Python threads, with the GIL)

static PyObject* closedError()
{
    PyErr_SetString(PyExc_RuntimeError,"the yaypm host is closing");
    return 0;
}

static PyObject* host_register(PyObject*, PyObject* args)
{
    PyObject *onMsg, *onWatch, *cft, *relErr;
    if (!PyArg_ParseTuple(args,"OOOO:register",&onMsg,&onWatch,&cft,&relErr))
	return 0;
    Py_INCREF(onMsg);
    Py_INCREF(onWatch);
    Py_INCREF(cft);
    Py_INCREF(relErr);
    Py_XSETREF(s_onMessage,onMsg);
    Py_XSETREF(s_onWatch,onWatch);
    Py_XSETREF(s_callFromThread,cft);
    Py_XSETREF(s_releasedError,relErr);
    Py_RETURN_NONE;
}

static PyObject* host_install(PyObject*, PyObject* args)
{
    int owner;
    unsigned int prio;
    PyObject *name, *fname, *fvalue, *track;
    if (!PyArg_ParseTuple(args,"iOIOOO:install",&owner,&name,&prio,&fname,&fvalue,&track))
	return 0;
    String n, fn, fv, tr;
    if (!toStr(name,n,false) || !toStr(fname,fn) || !toStr(fvalue,fv) || !toStr(track,tr))
	return 0;
    if (n.null())
	return PyErr_Format(PyExc_ValueError,"a handler needs a message name");
    int id = 0;
    Py_BEGIN_ALLOW_THREADS
    Lock lck(s_mutex);
    if (s_alive) {
	id = s_nextId++;
	MessageRelay* r = new MessageRelay(n,&s_receiver,id,prio,tr.null() ? "yaypmhost" : tr.c_str());
	if (fn)
	    r->setFilter(fn,fv);
	s_handlers.append(new HandlerEntry(id,owner,r));
	Engine::install(r);
    }
    lck.drop();
    Py_END_ALLOW_THREADS
    if (!id)
	return closedError();
    return PyLong_FromLong(id);
}

// Caller does not hold s_mutex; relay already out of the registry
static void dropRelay(MessageRelay* r)
{
    Engine::uninstall(r);
    TelEngine::destruct(r);
}

static PyObject* host_uninstall(PyObject*, PyObject* args)
{
    int id;
    if (!PyArg_ParseTuple(args,"i:uninstall",&id))
	return 0;
    bool ok = false;
    Py_BEGIN_ALLOW_THREADS
    MessageRelay* r = 0;
    Lock lck(s_mutex);
    for (ObjList* o = s_handlers.skipNull(); o; o = o->skipNext()) {
	HandlerEntry* e = static_cast<HandlerEntry*>(o->get());
	if (e->m_id == id) {
	    r = e->m_relay;
	    o->remove();
	    break;
	}
    }
    lck.drop();
    if (r) {
	dropRelay(r);
	ok = true;
    }
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(ok);
}

static PyObject* host_watch(PyObject*, PyObject* args)
{
    int owner;
    PyObject* name;
    if (!PyArg_ParseTuple(args,"iO:watch",&owner,&name))
	return 0;
    String n;
    if (!toStr(name,n))
	return 0;
    int id = 0;
    Py_BEGIN_ALLOW_THREADS
    Lock lck(s_mutex);
    if (s_alive && Engine::self()) {
	id = s_nextId++;
	WatchHook* h = new WatchHook(id,owner,n);
	s_hooks.append(h)->setDelete(false);
	Engine::self()->setHook(h);
    }
    lck.drop();
    Py_END_ALLOW_THREADS
    if (!id)
	return closedError();
    return PyLong_FromLong(id);
}

// Caller holds no lock; hook already out of the registry
static void dropHook(WatchHook* h)
{
    if (Engine::self())
	Engine::self()->setHook(h,true);
    h->deref();
}

static PyObject* host_unwatch(PyObject*, PyObject* args)
{
    int id;
    if (!PyArg_ParseTuple(args,"i:unwatch",&id))
	return 0;
    bool ok = false;
    Py_BEGIN_ALLOW_THREADS
    WatchHook* h = 0;
    Lock lck(s_mutex);
    for (ObjList* o = s_hooks.skipNull(); o; o = o->skipNext()) {
	WatchHook* w = static_cast<WatchHook*>(o->get());
	if (w->m_id == id) {
	    h = w;
	    h->m_active = false;
	    o->remove(false);
	    break;
	}
    }
    lck.drop();
    if (h) {
	dropHook(h);
	ok = true;
    }
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(ok);
}

// Remove every handler and hook of one owner (a script being stopped)
static int releaseOwner(int owner, bool all)
{
    ObjList relays;
    ObjList hooks;
    Lock lck(s_mutex);
    for (ObjList* o = s_handlers.skipNull(); o; ) {
	HandlerEntry* e = static_cast<HandlerEntry*>(o->get());
	if (all || e->m_owner == owner) {
	    relays.append(e->m_relay)->setDelete(false);
	    o->remove();
	    o = o->skipNull();
	}
	else
	    o = o->skipNext();
    }
    for (ObjList* o = s_hooks.skipNull(); o; ) {
	WatchHook* w = static_cast<WatchHook*>(o->get());
	if (all || w->m_owner == owner) {
	    w->m_active = false;
	    hooks.append(w)->setDelete(false);
	    o->remove(false);
	    o = o->skipNull();
	}
	else
	    o = o->skipNext();
    }
    if (all)
	s_owners.clear();
    else {
	OwnerEntry* e = findOwner(owner);
	if (e)
	    s_owners.remove(e);
    }
    lck.drop();
    int n = 0;
    for (ObjList* o = relays.skipNull(); o; o = o->skipNext(), n++)
	dropRelay(static_cast<MessageRelay*>(o->get()));
    for (ObjList* o = hooks.skipNull(); o; o = o->skipNext(), n++)
	dropHook(static_cast<WatchHook*>(o->get()));
    return n;
}

static PyObject* host_release_owner(PyObject*, PyObject* args)
{
    int owner;
    if (!PyArg_ParseTuple(args,"i:release_owner",&owner))
	return 0;
    int n;
    Py_BEGIN_ALLOW_THREADS
    n = releaseOwner(owner,false);
    Py_END_ALLOW_THREADS
    return PyLong_FromLong(n);
}

static PyObject* host_set_options(PyObject*, PyObject* args)
{
    int owner;
    unsigned int timeout;
    int reenter, selfwatch;
    if (!PyArg_ParseTuple(args,"iIpp:set_options",&owner,&timeout,&reenter,&selfwatch))
	return 0;
    Py_BEGIN_ALLOW_THREADS
    Lock lck(s_mutex);
    OwnerEntry* e = findOwner(owner,true);
    e->m_timeout = timeout;
    e->m_reenter = reenter != 0;
    e->m_selfWatch = selfwatch != 0;
    lck.drop();
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static HostMessage* buildMessage(PyObject* args, const char* fmt)
{
    int owner;
    PyObject *name, *retval, *params;
    int broadcast = 0;
    if (!PyArg_ParseTuple(args,fmt,&owner,&name,&retval,&params,&broadcast))
	return 0;
    String n, rv;
    if (!toStr(name,n,false) || !toStr(retval,rv))
	return 0;
    if (n.null()) {
	PyErr_SetString(PyExc_ValueError,"a message needs a name");
	return 0;
    }
    HostMessage* m = new HostMessage(n,rv,broadcast != 0,owner);
    if (!fillParams(*m,params)) {
	TelEngine::destruct(m);
	return 0;
    }
    return m;
}

// dispatch(owner, name, retval, params, broadcast=False) -> (handled, name, retval, params)
// Blocks in Engine::dispatch with the GIL released: never call it on the reactor thread.
static PyObject* host_dispatch(PyObject*, PyObject* args)
{
    HostMessage* m = buildMessage(args,"iOOO|p:dispatch");
    if (!m)
	return 0;
    bool alive;
    bool handled = false;
    Py_BEGIN_ALLOW_THREADS
    Lock lck(s_mutex);
    alive = s_alive;
    lck.drop();
    if (alive)
	handled = Engine::dispatch(*m);
    Py_END_ALLOW_THREADS
    PyObject* out = 0;
    if (alive) {
	NamedList copy("");
	copy.copyParams(*m);
	out = Py_BuildValue("(ONNN)",handled ? Py_True : Py_False,pyStr(*m),
	    pyStr(m->retValue()),pyParams(copy));
    }
    else
	closedError();
    TelEngine::destruct(m);
    return out;
}

static PyObject* host_enqueue(PyObject*, PyObject* args)
{
    HostMessage* m = buildMessage(args,"iOOO|p:enqueue");
    if (!m)
	return 0;
    bool ok = false;
    Py_BEGIN_ALLOW_THREADS
    Lock lck(s_mutex);
    bool alive = s_alive;
    lck.drop();
    if (alive)
	ok = Engine::enqueue(m);
    if (!ok)
	TelEngine::destruct(m);
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(ok);
}

static PyObject* host_run_params(PyObject*, PyObject*)
{
    PyObject* out = PyDict_New();
    const NamedList& p = Engine::runParams();
    for (unsigned int i = 0; out && i < p.length(); i++) {
	const NamedString* s = p.getParam(i);
	if (!s)
	    continue;
	PyObject* k = pyStr(s->name());
	PyObject* v = pyStr(*s);
	if (!k || !v || PyDict_SetItem(out,k,v) < 0)
	    Py_CLEAR(out);
	Py_XDECREF(k);
	Py_XDECREF(v);
    }
    return out;
}

static PyObject* sectionPairs(const NamedList* sect)
{
    if (!sect)
	Py_RETURN_NONE;
    return pyParams(*sect);
}

static bool sectionKey(PyObject* args, const char* fmt, String& sect, String& key)
{
    PyObject *s, *k = Py_None;
    if (!PyArg_ParseTuple(args,fmt,&s,&k))
	return false;
    return toStr(s,sect,false) && toStr(k,key);
}

// config(section, key=None): a value of yate.conf (None if absent), or a section's pairs
static PyObject* host_config(PyObject*, PyObject* args)
{
    String sect, key;
    if (!sectionKey(args,"O|O:config",sect,key))
	return 0;
    const Configuration& cfg = Engine::config();
    if (key.null())
	return sectionPairs(cfg.getSection(sect));
    const NamedString* ns = cfg.getKey(sect,key);
    if (!ns)
	Py_RETURN_NONE;
    return pyStr(*ns);
}

// host_config(section, key=None): the same for yaypmhost.conf (as last (re)loaded)
static PyObject* host_host_config(PyObject*, PyObject* args)
{
    String sect, key;
    if (!sectionKey(args,"O|O:host_config",sect,key))
	return 0;
    NamedList copy("");
    bool found = false;
    Lock lck(s_mutex);
    const NamedList* nl = static_cast<const NamedList*>(s_hostSections[sect]);
    if (nl && key.null()) {
	copy.copyParams(*nl);
	found = true;
    }
    else if (nl) {
	const NamedString* ns = nl->getParam(key);
	if (ns) {
	    copy.addParam(key,*ns);
	    found = true;
	}
    }
    lck.drop();
    if (!found)
	Py_RETURN_NONE;
    if (key.null())
	return pyParams(copy);
    return pyStr(*copy.getParam(0));
}

static PyObject* host_plugin_loaded(PyObject*, PyObject* arg)
{
    String n;
    if (!toStr(arg,n,false))
	return 0;
    return PyBool_FromLong(Engine::self() && Engine::self()->pluginLoaded(n));
}

static PyObject* host_debug(PyObject*, PyObject* args)
{
    int level;
    PyObject* text;
    if (!PyArg_ParseTuple(args,"iO:debug",&level,&text))
	return 0;
    String t;
    if (!toStr(text,t))
	return 0;
    if (level < DebugTest)
	level = DebugTest;
    if (level > DebugAll)
	level = DebugAll;
    Py_BEGIN_ALLOW_THREADS
    Debug(&__plugin,level,"%s",t.safe());
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject* host_output(PyObject*, PyObject* arg)
{
    String t;
    if (!toStr(arg,t))
	return 0;
    Py_BEGIN_ALLOW_THREADS
    Output("%s",t.safe());
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject* host_debug_level(PyObject*, PyObject*)
{
    return PyLong_FromLong(__plugin.debugLevel());
}

static PyObject* host_exiting(PyObject*, PyObject*)
{
    return PyBool_FromLong(Engine::exiting());
}

static PyObject* host_stats(PyObject*, PyObject*)
{
    Lock lck(s_mutex);
    int handlers = s_handlers.count();
    int hooks = s_hooks.count();
    int pending = s_pending.count();
    unsigned int answered = s_answered, timedOut = s_timedOut, received = s_received;
    unsigned int timeout = s_timeout;
    lck.drop();
    return Py_BuildValue("{s:i,s:i,s:i,s:I,s:I,s:I,s:I}","handlers",handlers,"hooks",hooks,
	"pending",pending,"answered",answered,"timeouts",timedOut,"received",received,
	"timeout",timeout);
}

static PyMethodDef host_methods[] = {
    {"register", host_register, METH_VARARGS,
	"register(on_message, on_watch, call_from_thread, released_error)"},
    {"install", host_install, METH_VARARGS,
	"install(owner, name, priority, filter_name, filter_value, track) -> handler id"},
    {"uninstall", host_uninstall, METH_VARARGS, "uninstall(handler_id) -> bool"},
    {"watch", host_watch, METH_VARARGS, "watch(owner, name) -> watch id"},
    {"unwatch", host_unwatch, METH_VARARGS, "unwatch(watch_id) -> bool"},
    {"release_owner", host_release_owner, METH_VARARGS,
	"release_owner(owner) -> number of handlers and watches removed"},
    {"set_options", host_set_options, METH_VARARGS,
	"set_options(owner, timeout_ms, reenter, selfwatch)"},
    {"dispatch", host_dispatch, METH_VARARGS,
	"dispatch(owner, name, retval, params, broadcast=False) -> (handled, name, retval, params);"
	" blocks: never call it on the reactor thread"},
    {"enqueue", host_enqueue, METH_VARARGS,
	"enqueue(owner, name, retval, params, broadcast=False) -> bool"},
    {"run_params", host_run_params, METH_NOARGS, "Engine::runParams() as a dict"},
    {"config", host_config, METH_VARARGS, "config(section, key=None): yate.conf"},
    {"host_config", host_host_config, METH_VARARGS, "host_config(section, key=None): yaypmhost.conf"},
    {"plugin_loaded", host_plugin_loaded, METH_O, "plugin_loaded(name) -> bool"},
    {"debug", host_debug, METH_VARARGS, "debug(level, text): log through Yate's Debug"},
    {"output", host_output, METH_O, "output(text): Yate's Output"},
    {"debug_level", host_debug_level, METH_NOARGS, "The module's debug level"},
    {"exiting", host_exiting, METH_NOARGS, "Engine::exiting()"},
    {"stats", host_stats, METH_NOARGS, "Counters of the host"},
    {0, 0, 0, 0}
};

static struct PyModuleDef host_module = {
    PyModuleDef_HEAD_INIT, "_yaypmhost",
    "Host API of Yate's yaypmhost module (internal; use yaypm.embedded).", -1, host_methods,
    0, 0, 0, 0
};

static PyObject* initHostModule()
{
    PyObject* m = PyModule_Create(&host_module);
    if (!m)
	return 0;
    if (!s_rawType)
	s_rawType = PyType_FromSpec(&raw_spec);
    if (!s_rawType) {
	Py_DECREF(m);
	return 0;
    }
    Py_INCREF(s_rawType);
    if (PyModule_AddObject(m,"RawMessage",s_rawType) < 0) {
	Py_DECREF(s_rawType);
	Py_DECREF(m);
	return 0;
    }
    PyModule_AddIntConstant(m,"DebugWarn",DebugWarn);
    PyModule_AddIntConstant(m,"DebugMild",DebugMild);
    PyModule_AddIntConstant(m,"DebugNote",DebugNote);
    PyModule_AddIntConstant(m,"DebugCall",DebugCall);
    PyModule_AddIntConstant(m,"DebugInfo",DebugInfo);
    PyModule_AddIntConstant(m,"DebugAll",DebugAll);
    PyModule_AddStringConstant(m,"version",YATE_VERSION);
    return m;
}

// ------------------------------------------------------------------------------------------
// The module

bool HaltHandler::received(Message& msg)
{
    __plugin.halt();
    return false;
}

YaypmHost::YaypmHost()
    : Module("yaypmhost","misc"), m_first(true)
{
    Output("Loaded module YaypmHost");
}

YaypmHost::~YaypmHost()
{
    // Never touch Python here: static destructors run after the engine is gone
    Output("Unloading module YaypmHost");
}

void YaypmHost::statusParams(String& str)
{
    Lock lck(s_mutex);
    str.append("python=",",") << (s_alive ? "running" : (s_halted ? "stopped" : "off"));
    str << ",handlers=" << s_handlers.count() << ",watches=" << s_hooks.count();
    str << ",pending=" << s_pending.count() << ",answered=" << s_answered;
    str << ",timeouts=" << s_timedOut;
}

// The settings handed to yaypm.embedded: a dict built from yaypmhost.conf
PyObject* YaypmHost::buildSettings(Configuration& cfg)
{
    PyObject* d = PyDict_New();
    if (!d)
	return 0;
    PyObject* scripts = PyList_New(0);
    const NamedList* sect = cfg.getSection("scripts");
    for (unsigned int i = 0; sect && scripts && i < sect->length(); i++) {
	const NamedString* s = sect->getParam(i);
	if (!s || s->name().null() || s->null())
	    continue;
	PyObject* pair = Py_BuildValue("(NN)",pyStr(s->name()),pyStr(*s));
	if (pair)
	    PyList_Append(scripts,pair);
	Py_XDECREF(pair);
    }
    const NamedList* gen = cfg.getSection("general");
    PyObject* general = gen ? pyParams(*gen) : PyList_New(0);
    if (scripts)
	PyDict_SetItemString(d,"scripts",scripts);
    if (general)
	PyDict_SetItemString(d,"general",general);
    Py_XDECREF(scripts);
    Py_XDECREF(general);
    if (PyErr_Occurred()) {
	Py_DECREF(d);
	return 0;
    }
    return d;
}

// First initialize() only, on its thread (normally Yate's main thread)
bool YaypmHost::startPython(const NamedList& general, PyObject*)
{
    // Extension modules (lib-dynload, zope.interface...) need libpython's symbols global even
    // when Yate loads us with RTLD_LOCAL ([localsym] or -Dl)
    const char* soname = general.getValue("pylib",PYLIB_SONAME);
    if (soname && !::dlopen(soname,RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL))
	Debug(this,DebugMild,"Could not promote %s to RTLD_GLOBAL: %s",soname,::dlerror());

    if (PyImport_AppendInittab("_yaypmhost",&initHostModule) < 0) {
	Debug(this,DebugWarn,"Cannot register the _yaypmhost module");
	return false;
    }
    String exe = general.getValue("executable");
    String venv = general.getValue("venv");
    if (exe.null() && venv)
	exe = venv + "/bin/python3";
    if (exe.null() && PY_EXECUTABLE)
	exe = PY_EXECUTABLE;
    String home = general.getValue("home");

    PyConfig c;
    PyConfig_InitPythonConfig(&c);
    c.install_signal_handlers = 0;	// Yate owns the signals
    c.parse_argv = 0;
    c.configure_c_stdio = 0;
    PyStatus st = PyStatus_Ok();
    if (exe) {
	st = PyConfig_SetBytesString(&c,&c.executable,exe);
	if (!PyStatus_Exception(st))
	    st = PyConfig_SetBytesString(&c,&c.program_name,exe);
    }
    if (!PyStatus_Exception(st) && home)
	st = PyConfig_SetBytesString(&c,&c.home,home);
    if (!PyStatus_Exception(st))
	st = Py_InitializeFromConfig(&c);
    PyConfig_Clear(&c);
    if (PyStatus_Exception(st)) {
	// Never Py_ExitStatusException(): it would exit Yate
	Debug(this,DebugWarn,"Python initialization failed: %s%s%s",
	    st.func ? st.func : "",st.func ? ": " : "",st.err_msg ? st.err_msg : "?");
	return false;
    }
    s_pyStarted = true;
    s_initThread = ::pthread_self();
    Debug(this,DebugInfo,"Python %s started (executable '%s')",Py_GetVersion(),exe.safe());
    return true;
}

void YaypmHost::initialize()
{
    Output("Initializing module YaypmHost");
    s_cfg = Engine::configFile("yaypmhost");
    s_cfg.load();
    const NamedList& general = s_cfg.getSection("general") ? *s_cfg.getSection("general")
	: NamedList::empty();
    unsigned int timeout = general.getIntValue("timeout",10000,100,600000);
    Lock lck(s_mutex);
    s_timeout = timeout;
    s_stopTimeout = general.getDoubleValue("stop_timeout",3.0);
    s_hostSections.clear();
    for (unsigned int i = 0; i < s_cfg.sections(); i++) {
	const NamedList* nl = s_cfg.getSection(i);
	if (nl)
	    s_hostSections.append(new NamedList(*nl));
    }
    lck.drop();

    if (m_first) {
	m_first = false;
	setup();
	if (!general.getBoolValue("enabled",true)) {
	    Debug(this,DebugNote,"Disabled in yaypmhost.conf");
	    return;
	}
	if (!startPython(general,0))
	    return;
	s_haltHandler = new HaltHandler(general.getIntValue("halt_priority",1000,0));
	Engine::install(s_haltHandler);
	// With the GIL (held since initialization) on the init thread
	lck.acquire(s_mutex);
	s_alive = true;
	lck.drop();
	// python_path entries go first on sys.path, before yaypm is imported
	String pp = general.getValue("python_path");
	PyObject* path = PySys_GetObject("path");	// borrowed
	if (pp && path) {
	    ObjList* parts = pp.split(':',false);
	    int pos = 0;
	    for (ObjList* o = parts->skipNull(); o; o = o->skipNext()) {
		PyObject* s = pyStr(*static_cast<String*>(o->get()));
		if (s)
		    PyList_Insert(path,pos++,s);
		Py_XDECREF(s);
	    }
	    TelEngine::destruct(parts);
	}
	PyObject* settings = buildSettings(s_cfg);
	PyObject* mod = settings ? PyImport_ImportModule("yaypm.embedded") : 0;
	PyObject* host = mod ? PyObject_CallMethod(mod,"_host_main","O",settings) : 0;
	if (host)
	    s_host = host;
	else {
	    logPyError("Starting yaypm.embedded");
	    Debug(this,DebugWarn,"Python is running but no yaypm script will run"
		" (check python_path/executable in yaypmhost.conf)");
	}
	Py_XDECREF(mod);
	Py_XDECREF(settings);
	s_mainState = PyEval_SaveThread();
	return;
    }
    // Reload: re-read the scripts in the running interpreter (the reactor is never restarted)
    if (!gateEnter())
	return;
    PyGILState_STATE g = PyGILState_Ensure();
    if (s_host) {
	PyObject* settings = buildSettings(s_cfg);
	PyObject* r = settings ? PyObject_CallMethod(s_host,"reload","O",settings) : 0;
	if (!r)
	    logPyError("Reloading yaypm scripts");
	Py_XDECREF(r);
	Py_XDECREF(settings);
    }
    PyGILState_Release(g);
    gateLeave();
}

// engine.halt, Yate's main thread: stop Python while everything is still alive
void YaypmHost::halt()
{
    if (!s_pyStarted || s_halted)
	return;
    s_halted = true;
    Debug(this,DebugInfo,"Stopping Python");
    // 1. close the gate and wake every Yate thread waiting for Python
    Lock lck(s_mutex);
    s_alive = false;
    for (ObjList* o = s_pending.skipNull(); o; o = o->skipNext())
	static_cast<Pending*>(o->get())->release();
    lck.drop();
    // 2. remove every relay and hook (never waits for Python: relays are safe before the call)
    releaseOwner(0,true);
    // 3. wait (without the GIL) for threads still inside the gate
    for (int i = 0; i < 500; i++) {
	lck.acquire(s_mutex);
	int n = s_inflight;
	lck.drop();
	if (!n)
	    break;
	if (i == 499)
	    Debug(this,DebugWarn,"%d Yate threads still inside Python",n);
	Thread::msleep(10);
    }
    // 4. stop the reactor and our Python threads
    bool onInit = ::pthread_equal(s_initThread,::pthread_self());
    PyGILState_STATE g = PyGILState_UNLOCKED;
    if (onInit && s_mainState)
	PyEval_RestoreThread(s_mainState);
    else
	g = PyGILState_Ensure();
    s_mainState = 0;
    bool clean = true;
    if (s_host) {
	PyObject* r = PyObject_CallMethod(s_host,"stop","d",s_stopTimeout);
	if (r)
	    clean = PyObject_IsTrue(r) == 1;
	else {
	    logPyError("Stopping yaypm");
	    clean = false;
	}
	Py_XDECREF(r);
    }
    Py_CLEAR(s_host);
    Py_CLEAR(s_onMessage);
    Py_CLEAR(s_onWatch);
    Py_CLEAR(s_callFromThread);
    Py_CLEAR(s_releasedError);
    if (clean && onInit) {
	Py_CLEAR(s_rawType);
	int rc = Py_FinalizeEx();
	Debug(this,DebugInfo,"Python finalized (%d)",rc);
    }
    else {
	// Threads we could not stop may still run Python: leave the interpreter alone
	Debug(this,DebugWarn,"Python threads still running: interpreter left as is");
	if (onInit)
	    PyEval_SaveThread();
	else
	    PyGILState_Release(g);
    }
}

}; // anonymous namespace

// A process keeps one interpreter for its life: never unload
UNLOAD_PLUGIN(unloadNow)
{
    return false;
}

/* vi: set ts=8 sw=4 sts=4 noet: */
