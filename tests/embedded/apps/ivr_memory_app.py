"""A short IVR flow for the memory test, run inside Yate (calls to "mem"), plus a probe.

Each call: answer, the welcome prompt with barge-in, one key (the caller sends it at once,
so it stops the prompt), then wait for the caller to hang up.  The probe is a handler of
``yaypm.test.memory``: after a full collection it answers with the interpreter's counts (objects
the collector tracks, memory blocks allocated) and this app's counters,
``objects=N,blocks=N,calls=N,keys=N,ended=N``.
"""

import gc
import sys

from twisted.internet import reactor

import yaypm
from yaypm.ivr import CallEnded, route
from yaypm.prompts import prompt

stats = {"calls": 0, "keys": 0, "ended": 0}


async def short_call(leg):
    stats["calls"] += 1
    try:
        await leg.answer()
        await leg.digits(count=1, timeout=5, prompt=prompt("welcome"))
        stats["keys"] += 1
        await leg.ended
    except CallEnded:
        pass
    finally:
        stats["ended"] += 1


def memory(m):
    gc.collect()
    counts = {"objects": len(gc.get_objects()), "blocks": sys.getallocatedblocks(), **stats}
    m.ret(True, ",".join(f"{k}={v}" for k, v in counts.items()))


def start(yate):
    route(yate, "mem", short_call)
    yate.handler("yaypm.test.memory", memory)


if __name__ == "__embedded_yaypm_module__":
    yaypm.embeddedStart(start)
    installSignalHandlers = 0
else:
    installSignalHandlers = 1

reactor.run(installSignalHandlers)
