"""What can go wrong on a lean connection, and the gateway error each one is.

The lean client raises these at its one boundary with the socket (as httpcore's
`map_exceptions` does); `gateway.engine.transport.upstream_errors.as_gateway_error` turns them
into the very errors, statuses and words the gateway gives for aiohttp's client, naming the
provider and never its address.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl

from gateway.engine.transport.upstream_errors import UpstreamFailure
from gateway.server import fdlimit
from wire.errors import GatewayError, UpstreamProtocolError, UpstreamUnreachable


class LeanError(UpstreamFailure):
    """A failure of a lean upstream connection."""


class ConnectFailed(LeanError):
    """No connection: refused, unresolved, or a TLS handshake that failed."""

    def __init__(self, os_error: OSError) -> None:
        super().__init__(str(os_error))
        self.os_error = os_error

    def gateway_error(self, name: str) -> GatewayError:
        error = self.os_error
        if isinstance(error, ssl.SSLCertVerificationError):
            reason = "its TLS certificate could not be verified"
        elif isinstance(error, ssl.SSLError):
            reason = "the TLS handshake failed"
        elif isinstance(error, socket.gaierror):
            reason = "its host name could not be resolved"
        elif error.errno in fdlimit.EXHAUSTED:
            fdlimit.report_exhaustion(f"connecting to provider {name}")
            return GatewayError(
                f"The gateway cannot open a connection to provider {name} now: it has run out "
                "of file descriptors. Try again shortly.",
                status=503,
                code="out_of_file_descriptors",
            )
        else:
            reason = os_reason(error, "the connection failed")
        return UpstreamUnreachable(f"Cannot connect to provider {name}: {reason}.")


class ClosedBeforeAnswer(LeanError):
    def gateway_error(self, name: str) -> GatewayError:
        return UpstreamUnreachable(f"Provider {name} closed the connection before answering.")


class ClosedMidBody(LeanError):
    def gateway_error(self, name: str) -> GatewayError:
        return UpstreamUnreachable(
            f"Provider {name} closed the connection before the answer was complete."
        )


class ConnectionLost(LeanError):
    """The socket failed (a reset, a broken pipe) before the answer began."""

    def __init__(self, os_error: OSError) -> None:
        super().__init__(str(os_error))
        self.os_error = os_error

    def gateway_error(self, name: str) -> GatewayError:
        return UpstreamUnreachable(
            f"The connection to provider {name} was lost "
            f"({os_reason(self.os_error, 'a network error')})."
        )


class NotInflatable(LeanError):
    """A gzip or deflate body that does not inflate, or an encoding the gateway did not ask."""

    def gateway_error(self, name: str) -> GatewayError:
        return UpstreamProtocolError(
            f"Provider {name} sent a compressed answer that could not be inflated."
        )


class InvalidResponse(LeanError):
    """Bytes llhttp refuses as an HTTP/1.1 response."""

    def gateway_error(self, name: str) -> GatewayError:
        return UpstreamProtocolError(f"Provider {name} sent a response that is not valid HTTP.")


class InvalidUrl(LeanError):
    def gateway_error(self, name: str) -> GatewayError:
        return UpstreamUnreachable(f"Provider {name} has an invalid base_url.")


def os_reason(error: OSError, default: str) -> str:
    """An OSError in words ("connection refused"), without the address it carries."""
    code = error.errno
    if code is None or code == errno.EIO:
        return default
    return os.strerror(code).lower()
