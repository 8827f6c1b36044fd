"""yaypm: Yate external modules in Python, on Twisted Deferreds.

The original YAYPM names are re-exported here so code written from its documentation
(``from yaypm import TCPDispatcherFactory, AbandonedException``) runs unchanged.
"""

from yaypm.connectors import (DispatcherService, TCPDispatcher, TCPDispatcherFactory,
                              connect_service)
from yaypm.dispatcher import (AbandonedException, DisconnectedException, Dispatcher,
                              InstallError, LineTooLongError, Message, YateError)
from yaypm.protocol import ProtocolError
from yaypm.embedded import (EmbeddedDispatcher, MessageReleasedError, embededStart,
                            embeddedStart)

__all__ = [
    "AbandonedException", "DisconnectedException", "Dispatcher", "DispatcherService",
    "InstallError", "LineTooLongError", "Message", "ProtocolError", "TCPDispatcher",
    "TCPDispatcherFactory", "YateError", "connect_service", "EmbeddedDispatcher",
    "MessageReleasedError", "embededStart", "embeddedStart",
]

__version__ = "0.1.0"
