"""Modules: registry, decorators, sys, utils, py, mysql (bound parameters), monitoring,
conference, dlg, stubs, third-party modules by dotted path."""
from __future__ import annotations

import os

import pytest

from yaypm.dsm import DSMLoadError, FakeBackend
from yaypm.dsm.modules import DSMModule, action, condition, module_class
from yaypm.dsm.sql import parse_sql

from dsm_helpers import QUIZ_SQL, SyncSQLite, make_engine, run


class Greeter(DSMModule):
    """A third-party module, imported by dotted path."""

    name = "test_modules.Greeter"

    @action("greet.hello", split=",", arity=(1, 2))
    def hello(self, s, who="", greeting="hi"):
        s.var["greeting"] = f"{s.resolve(greeting)} {s.resolve(who)}"

    @condition("greet.isBob", split="1", arity=(1, 1))
    def is_bob(self, s, who=""):
        return s.resolve(who) == "bob"


def test_third_party_module_by_dotted_path():
    assert module_class("test_modules.Greeter") is Greeter
    s, _, _ = run("import(test_modules.Greeter);\ninitial state A enter { greet.hello(bob, hello) };\n"
                  "transition t A - greet.isBob(bob) -> B; state B;")
    assert s.var["greeting"] == "hello bob"
    s.key(1)
    assert s.state.name == "B"
    with pytest.raises(KeyError):
        module_class("no.such.Module")


def test_module_arity_checked():
    with pytest.raises(DSMLoadError) as e:
        run("import(test_modules.Greeter);\ninitial state A enter { greet.hello() };")
    assert "greet.hello takes 1 to 2 parameter(s), got 0" in str(e.value)


def test_stub_modules_parse_and_set_errno():
    s, _, _ = run("import(mod_uri); import(mod_sbc);\ninitial state A enter { uri.parse($x, y) };\n"
                  "transition t A - legStateChange -> A;")
    assert s.var["errno"] == "script"


def test_sys_module(tmp_path):
    d = tmp_path / "d"
    s, _, _ = run(f"import(mod_sys);\ninitial state A enter {{ sys.mkdir({d}); "
                  f"sys.mkdirRecursive({d}/x/y); sys.popen($out=echo hi); "
                  f"sys.rename({d}/x, {d}/z); sys.tmpnam($t); sys.getTimestamp(t1); "
                  f"set($t0.tv_sec=0); set($t0.tv_usec=0); sys.subTimestamp(t1, t0) }};\n"
                  f"transition e A - sys.file_exists({d}/z/y); sys.file_not_exists({d}/x); "
                  f"sys.system(true); not sys.system(false) -> B; state B;")
    assert s.var["out"] == "hi\n" and s.var["out.status"] == "0"
    assert os.path.isdir(d / "z" / "y") and s.var["t"]
    assert s.var["t1.msec"] == "0"
    s.key(1)
    assert s.state.name == "B"
    f = tmp_path / "f"
    f.write_text("x")
    s2, _, _ = run(f"import(mod_sys);\ninitial state A enter {{ set($arr[0]=f); sys.unlinkArray($arr, {tmp_path});"
                   f" sys.unlink({tmp_path}/nope) }};")
    assert not f.exists() and s2.var["errno"] == "file"


def test_utils_module():
    s, b, _ = run("import(mod_utils);\ninitial state A enter { set($a=2); utils.add($a, 3);"
                  " set($m=4); utils.mul($m, 2.5); set($su=5); utils.sub($su, 7);"
                  " utils.int($i, 3.9); utils.md5($h, abc); utils.getNewId(id); utils.rand(r, 10);"
                  " utils.srand(); set($s=a-b-c); utils.replace($s, -=>+); set($l=1,2,3);"
                  " utils.splitString($l, \",\"); set($w=xy); utils.splitString($w);"
                  " set($js={\"a\": [1, {\"b\": true}]}); utils.decodeJson($js, $j);"
                  " utils.getCountRight(42, /n/); utils.playCountLeft(23, /n/); utils.spell(ab, /s/);"
                  " utils.playRingTone(1000, 100, 200); set($e=a\\r\\nb); utils.unescapeCRLF($e);"
                  " utils.escapeCRLF($e) };\n"
                  "transition t A - utils.isInList(b, \"a, b\"); utils.startsWith(hello, he) -> B; state B;")
    v = s.var
    assert (v["a"], v["m"], v["su"], v["i"]) == ("5", "10", "-2", "3")
    assert v["h"] == "900150983cd24fb0d6963f7d28e17f72" and len(v["id"]) == 36
    assert 0 <= int(v["r"]) < 10 and v["s"] == "a+b+c"
    assert (v["l[0]"], v["l[2]"], v["w[1]"]) == ("1", "3", "y")
    assert v["j.a[0]"] == "1" and v["j.a[1].b"] == "true"
    assert (v["count_file[0]"], v["count_file[1]"]) == ("/n/40.wav", "/n/x2.wav")
    assert [c[1] for c in b.calls if c[0] == "play"] == ["/n/x3.wav", "/n/20.wav", "/s/a.wav", "/s/b.wav"]
    assert ("play_ringtone", 1000, 100, 200, 440, 480, False) in b.calls
    assert v["e"] == "a\\r\\nb"
    s.key(1)
    assert s.state.name == "B"
    s2, _, _ = run("import(mod_utils);\ninitial state A enter { set($c=x\ny\n); utils.splitStringCR($c) };")
    assert (s2.var["c[0]"], s2.var["c[1]"]) == ("x", "y") and "c[2]" not in s2.var


def test_py_module_actions_conditions_locals_and_constants():
    s, b, _ = run("""import(mod_py);
initial state begin
 enter {
  py(dsm.INFO("hello"))
  py(#
session.setvar('some_variable', 'some val')
counter = 1
try:
    session.playFile('doesnotexist.wav')
except RuntimeError as e:
    session.setvar('exception', e.message)
)
  py(counter += 1; session.setvar('c', counter))
  setTimer(1, 5);
};
transition "timer" begin - py(type == dsm.Timer and params['id'] == '1') / py(session.playFile('wav/x.wav')) -> wait;
transition "int is false" begin - py(1) -> nope;
state wait; state nope;
""", backend=FakeBackend(missing_files={"doesnotexist.wav"}))
    assert s.var["some_variable"] == "some val" and s.var["exception"] == "file"
    assert s.var["c"] == "2"
    s.post_event("timer", {"id": "1"})
    assert s.state.name == "wait" and ("play", "wav/x.wav", False, False) in b.calls


def test_py_python2_code_is_a_load_error():
    with pytest.raises(DSMLoadError) as e:
        run("import(mod_py);\ninitial state A enter { py(#\nprint 'x'\n) };")
    assert "Python 2 print statement" in str(e.value) and "t.dsm:2" in str(e.value)
    with pytest.raises(DSMLoadError) as e:
        run("import(mod_py);\ninitial state A enter { py(#\ntry:\n  x=1\nexcept E, e:\n  pass\n) };")
    assert "except E as e" in str(e.value)


def test_py_error_logged_and_list_continues():
    s, _, _ = run("import(mod_py);\ninitial state A enter { py(1/0); set($after=1) };\n"
                  "transition t A - py(1/0) -> B; transition u A - key -> C; state B; state C;")
    assert s.var["after"] == "1"
    s.key(1)
    assert s.state.name == "C"


def test_sql_references_are_bound_parameters():
    t = parse_sql("select a from t where x=$x and y='$y' and z=\"%$z\" and w='a''b' and n=#n")
    sql, params = t.bind(lambda k, n: {"x": "1' OR '1'='1", "y": "Y", "z": "Z"}.get(n, "P") if k == "$"
                         else "N", "qmark")
    assert sql == "select a from t where x=? and y=? and z=? and w='a''b' and n=?"
    assert params == ("1' OR '1'='1", "Y", "%Z", "N")
    assert t.bind(lambda k, n: "v", "format")[0].count("%s") == 4
    assert parse_sql("select \\$x").bind(lambda k, n: "", "qmark") == ("select \\$x", ())


def test_mysql_module_end_to_end():
    db = SyncSQLite(QUIZ_SQL + "create table f (id text, data blob);")
    eng = make_engine({"m": """import(mod_mysql);
initial state A enter {
  mysql.connect(sqlite::memory:);
  set($k=35);
  mysql.query(select callee, pin from callees where caller=$k order by id);
  set($rows=$db.rows);
  mysql.getResult(1);
  mysql.getResult(0, pin);
  mysql.queryGetResult(select callee as c2, pin as p2 from callees where caller='$k' order by id, 1);
  mysql.saveResult(first);
  mysql.query(select 1 as one);
  mysql.useResult(first);
  mysql.getResult(0);
  mysql.execute(insert into callees (caller, callee, pin) values ($k, 'x, y', '0'));
  set($ins=$db.rows);
  mysql.resolveQueryParams(select * from t where a=$k);
  set($q=$quote);
  mysql.escape($esc=$q);
  mysql.getClientVersion($ver);
  mysql.query(select nonsense from nowhere);
  set($qerr=$errno);
  mysql.getResult(99);
  set($rerr=$errno);
};
transition t A - mysql.connected(); mysql.hasResult() -> B;
state B enter { mysql.disconnect(); mysql.query(select 1); set($cerr=$errno) };
"""}, sql_connect=lambda url: db)
    s = eng.create_session("m", FakeBackend(), variables={"quote": "it's"})
    s.start()
    v = s.var
    assert v["rows"] == "2" and v["callee"] == "anna" and v["pin"] == "12345"
    assert (v["c2"], v["p2"]) == ("john", "12345")   # row 1, then useResult(first) + getResult(0)
    assert v["ins"] == "1" and v["db.qstr"] == "select * from t where a='35'"
    assert v["esc"] == "it\\'s" and v["ver"] == "sqlite-test"
    assert v["qerr"] == "query" and v["rerr"] == "result"
    assert db.queries[2] == ("select callee as c2, pin as p2 from callees where caller=? order by id",
                             ("35",))
    s.key(1)
    assert s.var["cerr"] == "connection"


def test_mysql_blobs(tmp_path):
    db = SyncSQLite("create table f (id text, data blob); insert into f values ('a', x'52494646');")
    src = tmp_path / "in.bin"
    src.write_bytes(b"DATA")
    out = tmp_path / "out.bin"
    eng = make_engine({"m": f"""import(mod_mysql);
initial state A enter {{
  mysql.connect(sqlite::memory:);
  set($id=a);
  mysql.playDBAudio(SELECT data FROM f WHERE id="$id", rbt.wav);
  mysql.getFileFromDB(SELECT data FROM f WHERE id="$id", {out});
  mysql.putFileToDB(INSERT INTO f VALUES ('b', __FILE__), {src});
}};"""}, sql_connect=lambda url: db)
    b = FakeBackend()
    s = eng.create_session("m", b)
    s.start()
    assert out.read_bytes() == b"RIFF"
    assert b.calls[0][0] == "play" and b.calls[0][1].endswith("rbt.wav")
    assert db.db.execute("select data from f where id='b'").fetchone()[0] == b"DATA"
    assert s.var["errno"] == ""


def test_mysql_real_adbapi_executor(tmp_path):
    from yaypm.dsm.sql import AdbapiExecutor, parse_db_url
    assert parse_db_url("sqlite:" + str(tmp_path / "x.db"))[0] == "sqlite3"
    with pytest.raises(ValueError):
        parse_db_url("ftp://x")
    ex = AdbapiExecutor("sqlite:" + str(tmp_path / "x.db"))
    assert ex.paramstyle == "qmark"
    ex.close()


def test_monitoring_module():
    s, _, eng = run("import(mod_monitoring);\ninitial state A enter { monitoring.set(k, v);"
                    " monitoring.log(k2, v2); monitoring.add(l, 1); monitoring.logAdd(l, 2);"
                    " monitoring.inc(n); monitoring.inc(n); monitoring.dec(n); set($x=1);"
                    " monitoring.logVars(); monitoring.setGlobal(@local_tag, g, 1);"
                    " monitoring.addGlobal(@local_tag, gl, 2) };")
    rec = eng.monitoring.get(s.id)
    assert (rec["k"], rec["k2"], rec["l"], rec["n"], rec["x"], rec["g"], rec["gl"]) == \
        ("v", "v2", ["1", "2"], "1", "1", "1", ["2"])


def test_conference_module():
    eng = make_engine({"c": "import(mod_conference);\ninitial state A enter { conference.join(room1);"
                            " conference.size(room1, $n) };\n"
                            "transition k A - key / { conference.postEvent(room1, 7) } -> A;\n"
                            "transition e A - event(#type==conference_event) / set($got=#id) -> B;\n"
                            "state B enter { conference.rejoin(room2, listenonly); conference.leave();"
                            " conference.leave(); conference.setPlayoutType(adaptive); conference.teejoin(x);"
                            " conference.teeleave(); conference.setupMixIn(1, 2); conference.playMixIn(f);"
                            " conference.playMixInList(f); conference.flushMixInList() };"})
    b1, b2 = FakeBackend(), FakeBackend()
    s1, s2 = eng.create_session("c", b1), eng.create_session("c", b2)
    s1.start(), s2.start()
    assert s2.var["n"] == "2"
    s1.key(1)
    assert s1.var["got"] == "7" and s2.var["got"] == "7"
    assert ("join_conference", "room2", "listenonly") in b1.calls
    assert s1.var["errno"] == "script"
    assert [c[1] for c in b1.calls if c[0] == "media"][0] == "conference.setPlayoutType"


def test_conference_join_failure_throws():
    class Failing(FakeBackend):
        def join_conference(self, room, mode=""):
            from yaypm.dsm import MediaError
            raise MediaError("conference", "no mixer")
    s, _, _ = run("import(mod_conference);\ninitial state A;\ntransition k A - key / conference.join(r) -> B;\n"
                  "transition e A - exception; test(#type==conference) -> C; state B; state C;",
                  backend=Failing())
    s.key(1)
    assert s.state.name == "C"


def test_dlg_module():
    s, b, eng = run("import(mod_dlg);\ninitial state A;\n"
                    "transition r A - key(#key==1) / { set($dlg.reply.hdrs=X-A: 1); dlg.reply(486, Busy Here) } -> A;\n"
                    "transition a A - key(#key==2) / { dlg.acceptInvite(); dlg.acceptInvite(183, Progress);"
                    " dlg.reply(x, y); set($e=$errno); dlg.acceptInvite(500, x); dlg.bye() } -> A;\n"
                    "transition d A - key(#key==3) / { set($x_caller=me); set($x_callee=you);"
                    " set($x_domain=example.org); set($x_app=t); set($x_var.foo=bar); dlg.dialout(x);"
                    " dlg.dialout(y); set($ye=$errno) } -> A;\n"
                    "transition u A - key(#key==4) / { dlg.refer(sip:x); dlg.info(a, b) } -> A;\n"
                    "transition h A - hangup / stop -> A;")
    s.key(1)
    assert b.calls[-1] == ("reject", 486, "Busy Here")
    s.key(2)
    assert b.names()[-3:] == ["answer", "progress", "hangup"] and s.var["e"] == "arg"
    assert s.var["errno"] == "arg"
    s.key(3)
    req, child = b.dialled[0]
    assert (req.caller, req.callee, req.target_uri, req.variables) == \
        ("me", "you", "sip:you@example.org", {"foo": "bar"})
    leg = eng.registry.find(s.var["x_ltag"])
    assert leg.var["foo"] == "bar" and leg.direction == "out" and leg.select("user") == "you"
    assert s.var["ye"] == "arg"
    s.key(4)
    assert s.var["errno"] == "script"
