"""``yaypm build-module``: compile Yate's ``yaypmhost.yate`` (embedded mode) in one command.

    yaypm build-module --yate ~/.cache/yaypm/yate-<hash>            # -> embedded/build/
    yaypm build-module --yate PREFIX --install                       # -> PREFIX/lib/yate/

The module embeds *the interpreter running this command* (``sys.executable``; a venv's python
works: its ``pyvenv.cfg`` is read at start), so headers, libpython and site-packages agree.
That interpreter needs a shared libpython (Debian's ``python3.11``; pyenv built with
``--enable-shared``).  ``embedded/Makefile`` does the same for ``make`` users.

:func:`build_module` is also used by the tests; it caches: nothing is compiled when the source,
the Yate prefix and the interpreter are unchanged (a ``.stamp`` file next to the module).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import List, Optional, Sequence, Union

from yaypm.resources import is_packaged, resource_path

__all__ = ["add_subparsers", "build_module", "module_source", "BuildError", "MODULE_NAME"]

MODULE_NAME = "yaypmhost.yate"


class BuildError(Exception):
    """The module cannot be built here (no yate-config, no shared libpython, compiler error)."""


def module_source() -> Path:
    """``yaypmhost.cpp``: ``embedded/`` of the source tree, or its copy shipped in the
    installed package (:mod:`yaypm.resources`)."""
    return resource_path("embedded") / "yaypmhost.cpp"


def _default_output(src: Path) -> Path:
    """``build/`` beside the source in a checkout; outside the installed package (a cache
    folder, as scripts/install-yate uses) when the source is the packaged copy."""
    if is_packaged(src):
        cache = Path(os.environ.get("YAYPM_CACHE") or Path.home() / ".cache" / "yaypm")
        return cache / "yaypmhost-build"
    return src.parent / "build"


def _run(cmd: Sequence[str]) -> str:
    try:
        out = subprocess.run(list(cmd), check=True, capture_output=True, text=True)
    except FileNotFoundError as e:
        raise BuildError(f"{cmd[0]} not found") from e
    except subprocess.CalledProcessError as e:
        raise BuildError(f"{' '.join(cmd)} failed: {e.stderr.strip()}") from e
    return out.stdout.strip()


def _python_flags() -> tuple[List[str], List[str], str]:
    """Compile flags, link flags and the libpython soname of the running interpreter."""
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        raise BuildError(f"{sys.executable} has no shared libpython (built without "
                         "--enable-shared): use Debian's python3 or a pyenv build with "
                         "PYTHON_CONFIGURE_OPTS=--enable-shared")
    version = sysconfig.get_config_var("VERSION")
    config = Path(sysconfig.get_config_var("BINDIR") or "") / f"python{version}-config"
    soname = sysconfig.get_config_var("INSTSONAME") or f"libpython{version}.so.1.0"
    if config.is_file() and os.access(config, os.X_OK):
        cflags = shlex.split(_run([str(config), "--includes"]))
        ldflags = shlex.split(_run([str(config), "--embed", "--ldflags"]))
    else:                                    # no -config script: the same values by hand
        libdir = sysconfig.get_config_var("LIBDIR")
        cflags = [f"-I{sysconfig.get_paths()['include']}"]
        ldflags = [f"-L{libdir}", f"-lpython{version}{getattr(sys, 'abiflags', '')}",
                   *shlex.split(sysconfig.get_config_var("LIBS") or ""),
                   *shlex.split(sysconfig.get_config_var("SYSLIBS") or "")]
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir and libdir not in ("/usr/lib", "/usr/lib64") and \
            not libdir.startswith("/usr/lib/") and not any("rpath" in f for f in ldflags):
        ldflags.append(f"-Wl,-rpath,{libdir}")
    return cflags, ldflags, soname


def build_module(yate_prefix: Union[str, Path], output_dir: Union[str, Path, None] = None, *,
                 source: Union[str, Path, None] = None, cxx: Optional[str] = None,
                 force: bool = False, verbose: bool = False) -> Path:
    """Compile ``yaypmhost.yate`` against the Yate in ``yate_prefix``; returns its path.

    ``output_dir`` defaults to ``embedded/build`` beside the source (for the copy in an
    installed package: ``${YAYPM_CACHE:-~/.cache/yaypm}/yaypmhost-build``).  Raises BuildError with a
    one-line reason (and the compiler's output) when it cannot be built.
    """
    prefix = Path(yate_prefix).expanduser().resolve()
    yc = prefix / "bin" / "yate-config"
    if not (yc.is_file() and os.access(yc, os.X_OK)):
        raise BuildError(f"no {yc}: pass the prefix of an installed Yate "
                         "(scripts/install-yate prints it)")
    src = Path(source).resolve() if source else module_source()
    if not src.is_file():
        raise BuildError(f"no module source at {src} (pass --source)")
    out_dir = Path(output_dir).expanduser() if output_dir else _default_output(src)
    out = out_dir / MODULE_NAME
    compiler = cxx or os.environ.get("CXX") or "g++"
    if shutil.which(compiler) is None:
        raise BuildError(f"no C++ compiler {compiler!r} (apt-get install g++)")

    yate_c = shlex.split(_run([str(yc), "--c-all"]))
    yate_ld = shlex.split(_run([str(yc), "--ld-all"]))
    py_c, py_ld, soname = _python_flags()
    cmd = [compiler, "-Wall", "-O2", *yate_c, *py_c,
           f"-DPYLIB_SONAME=\"{soname}\"", f"-DPY_EXECUTABLE=\"{sys.executable}\"",
           "-o", str(out), str(src), *yate_ld, *py_ld]

    key = hashlib.sha256()
    key.update(src.read_bytes())
    key.update("\0".join(cmd).encode())
    stamp = out.with_name(out.name + ".stamp")
    digest = key.hexdigest()
    if not force and out.is_file() and stamp.is_file() and stamp.read_text().strip() == digest:
        return out
    out_dir.mkdir(parents=True, exist_ok=True)
    if verbose:
        print(" ".join(shlex.quote(c) for c in cmd), file=sys.stderr)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    cmd[cmd.index("-o") + 1] = str(tmp)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise BuildError(f"compiling {src.name} failed:\n{proc.stderr.strip()}")
    os.replace(tmp, out)                # atomic: a running Yate never sees half a file
    stamp.write_text(digest + "\n")
    return out


def _cmd_build_module(args: argparse.Namespace) -> int:
    try:
        path = build_module(args.yate, args.output, source=args.source, cxx=args.cxx,
                            force=args.force, verbose=args.verbose)
        if args.install:
            yc = Path(args.yate).expanduser() / "bin" / "yate-config"
            moddir = Path(_run([str(yc), "--modules"]))
            moddir.mkdir(parents=True, exist_ok=True)
            target = moddir / MODULE_NAME
            tmp = target.with_name(target.name + ".tmp")
            shutil.copy2(path, tmp)
            os.replace(tmp, target)
            path = target
    except BuildError as e:
        sys.stderr.write(f"yaypm: error: {e}\n")
        return 1
    sys.stderr.write(f"built for {sys.executable}; load it with [modules] {MODULE_NAME}=yes"
                     f"{'' if args.install else f' and yate -x {path.parent}'}, "
                     "scripts in yaypmhost.conf [scripts]\n")
    print(path)
    return 0


def add_subparsers(subparsers: argparse._SubParsersAction) -> None:
    """Register ``build-module`` with the ``yaypm`` command."""
    p = subparsers.add_parser(
        "build-module", help="compile Yate's yaypmhost.yate module (embedded mode)",
        description="Compile yaypmhost.yate, the Yate module that runs yaypm scripts inside "
                    "Yate, against an installed Yate, embedding this Python interpreter.")
    p.add_argument("--yate", required=True, metavar="PREFIX",
                   help="Yate install prefix (has bin/yate-config)")
    p.add_argument("--output", metavar="DIR",
                   help="output folder (default: embedded/build; installed yaypm: "
                        "~/.cache/yaypm/yaypmhost-build)")
    p.add_argument("--install", action="store_true",
                   help="also copy the module into the prefix's module folder")
    p.add_argument("--source", metavar="FILE",
                   help="yaypmhost.cpp (default: the one shipped with yaypm)")
    p.add_argument("--cxx", metavar="CXX", help="C++ compiler (default: $CXX or g++)")
    p.add_argument("--force", action="store_true", help="rebuild even if up to date")
    p.set_defaults(func=_cmd_build_module)


if __name__ == "__main__":                  # python -m yaypm.embedded_cli --yate PREFIX
    parser = argparse.ArgumentParser(prog="yaypm")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    add_subparsers(sub)
    ns = parser.parse_args(["build-module", *sys.argv[1:]])
    sys.exit(ns.func(ns))
