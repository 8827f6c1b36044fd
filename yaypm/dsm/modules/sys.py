"""mod_sys: file system and process helpers (`sys.*`, spec §2.9)."""
from __future__ import annotations

import os
import subprocess
import tempfile
import time
from typing import Any

from ..runtime import DSMException
from ..values import resolve, var_name
from . import DSMModule, action, condition, register_module


@register_module
class SysModule(DSMModule):
    """`import(mod_sys)`. Commands run synchronously (they block the reactor, as in SEMS they
    block the session thread): keep them short."""

    name = "mod_sys"

    def _ok(self, s: Any) -> None:
        s.set_errno("")

    def _fail(self, s: Any, e: OSError) -> None:
        s.set_errno("file", str(e))

    @action("sys.mkdir", arity=(1, 1))
    def mkdir(self, s: Any, path: str = "") -> None:
        try:
            os.mkdir(resolve(s, path))
            self._ok(s)
        except OSError as e:
            self._fail(s, e)

    @action("sys.mkdirRecursive", arity=(1, 1))
    def mkdir_recursive(self, s: Any, path: str = "") -> None:
        try:
            os.makedirs(resolve(s, path), exist_ok=True)
            self._ok(s)
        except OSError as e:
            self._fail(s, e)

    @action("sys.rename", split=",", arity=(2, 2))
    def rename(self, s: Any, src: str = "", dst: str = "") -> None:
        try:
            os.rename(resolve(s, src), resolve(s, dst))
            self._ok(s)
        except OSError as e:
            self._fail(s, e)

    @action("sys.unlink", arity=(1, 1))
    def unlink(self, s: Any, path: str = "") -> None:
        try:
            os.unlink(resolve(s, path))
            self._ok(s)
        except OSError as e:
            self._fail(s, e)

    @action("sys.unlinkArray", split=",", arity=(1, 2))
    def unlink_array(self, s: Any, array: str = "", prefix: str = "") -> None:
        """Unlink `prefix/$array[i]` for every index."""
        a = var_name(array)
        pre = resolve(s, prefix)
        i = 0
        failed = None
        while f"{a}[{i}]" in s.var:
            try:
                os.unlink(os.path.join(pre, s.var[f"{a}[{i}]"]) if pre else s.var[f"{a}[{i}]"])
            except OSError as e:
                failed = e
            i += 1
        if failed:
            self._fail(s, failed)
        else:
            self._ok(s)

    @action("sys.tmpnam", arity=(1, 1))
    def tmpnam(self, s: Any, name: str = "") -> None:
        fd, path = tempfile.mkstemp(prefix="dsm")
        os.close(fd)
        os.unlink(path)
        s.var[var_name(name)] = path

    @action("sys.popen", split="=", arity=(2, 2))
    def popen(self, s: Any, dst: str = "", cmd: str = "") -> None:
        """`$dst` = output of the shell command, `$dst.status` = its wait status."""
        command = resolve(s, cmd)
        try:
            p = subprocess.run(command, shell=True, stdout=subprocess.PIPE, timeout=60)
        except (OSError, subprocess.SubprocessError) as e:
            raise DSMException("sys", {"type": "popen", "cause": str(e)}) from None
        n = var_name(dst)
        s.var[n] = p.stdout.decode("utf-8", "surrogateescape")
        s.var[n + ".status"] = str(p.returncode << 8 if p.returncode >= 0 else -p.returncode)

    @action("sys.getTimestamp", arity=(1, 1))
    def get_timestamp(self, s: Any, name: str = "") -> None:
        n = resolve(s, name)
        now = s.clock.seconds()
        sec = int(now)
        s.var[n + ".tv_sec"] = str(sec)
        s.var[n + ".tv_usec"] = str(int(round((now - sec) * 1e6)))

    @action("sys.subTimestamp", split=",", arity=(2, 2))
    def sub_timestamp(self, s: Any, a: str = "", b: str = "") -> None:
        t1, t2 = resolve(s, a), resolve(s, b)

        def us(t: str) -> int:
            def num(x: str) -> int:
                try:
                    return int(s.var.get(x, "0") or 0)
                except ValueError:
                    return 0
            return num(t + ".tv_sec") * 1_000_000 + num(t + ".tv_usec")

        diff = us(t1) - us(t2)
        sec, usec = divmod(diff, 1_000_000)
        s.var[t1 + ".tv_sec"] = str(sec)
        s.var[t1 + ".tv_usec"] = str(usec)
        s.var[t1 + ".msec"] = str(diff // 1000)

    @condition("sys.file_exists", split="1", arity=(1, 1))
    def file_exists(self, s: Any, path: str = "") -> bool:
        return os.path.exists(resolve(s, path))

    @condition("sys.file_not_exists", split="1", arity=(1, 1))
    def file_not_exists(self, s: Any, path: str = "") -> bool:
        return not os.path.exists(resolve(s, path))

    @condition("sys.system", split="1", arity=(1, 1))
    def system(self, s: Any, cmd: str = "") -> bool:
        """True if the shell command exits with status 0."""
        try:
            return subprocess.run(resolve(s, cmd), shell=True, timeout=60).returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False


_ = time
