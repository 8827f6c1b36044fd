"""Operations: SEMS-compatible XML-RPC, a live status page, Prometheus metrics.

    from yaypm.monitor import Monitor
    mon = Monitor(registry, control)             # control: a ControlTarget (e.g. EngineControl)
    mon.watch_service(service)                   # messages, latency, reconnects
    port = await mon.listen("tcp:8090:interface=127.0.0.1")

Or from configuration: ``start_monitor(MonitorConfig.from_ini(parser).with_args(args), ...)``.
"""

from yaypm.monitor.control import ControlError, ControlTarget, NullControl
from yaypm.monitor.metrics import DispatchObserver, Metrics
from yaypm.monitor.rpc import MonitorRPC
from yaypm.monitor.server import (DEFAULT_ENDPOINT, Monitor, MonitorConfig, MonitorConfigError,
                                  MonitorService, check_endpoint, start_monitor)

__all__ = [
    "ControlError", "ControlTarget", "DEFAULT_ENDPOINT", "DispatchObserver", "Metrics",
    "Monitor", "MonitorConfig", "MonitorConfigError", "MonitorRPC", "MonitorService",
    "NullControl", "check_endpoint", "start_monitor",
]
