"""Other proxies measured beside the gateway (`--peer`), and what each one is sent.

Per-peer options follow the `--peer` they belong to on the command line; given before any
`--peer`, they apply to every peer (a peer's own value wins):

    --peer-model gpt-x --peer litellm=http://127.0.0.1:4000 --peer-key sk-master-...
        --peer portkey=http://127.0.0.1:8787 --peer-header x-portkey-provider=openai

Header names must be HTTP tokens and values may not hold CR, LF or NUL (they are written
into the raw request: such a value would add headers of its own). Keys and header values
never reach the results: `redacted_argv` is the command line the JSON keeps, and `secrets`
lists what the report and the JSON are scrubbed of.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from typing import Any

DEFAULT_MODEL = "mock-model"
REDACTED = "[redacted]"
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token: a header name
# Set by the load generator for every request: a peer may not change them.
_RESERVED = frozenset({"host", "content-length", "content-type", "transfer-encoding", "connection"})
# A header whose value is a credential: scrubbed wherever it would appear in the results.
_SECRET_NAME = re.compile(r"auth|key|token|secret|cookie|password", re.IGNORECASE)
PEER_OPTIONS = ("--peer", "--peer-model", "--peer-key", "--peer-header", "--peer-pid")


@dataclass
class Peer:
    name: str
    url: str
    model: str | None = None
    key: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    pid: int | None = None

    def request_headers(self) -> dict[str, str]:
        """What every request to this peer carries besides the load generator's own."""
        headers = dict(self.headers)
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        return headers


class InOrder(argparse.Action):
    """Keeps `--peer` and the per-peer options in command-line order (argparse's `append`
    would keep each option's values apart and lose which --peer they followed)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        items = list(getattr(namespace, "peer_options", None) or [])
        items.append((self.dest, values))
        namespace.peer_options = items


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(peer_options=[])
    parser.add_argument(
        "--peer",
        action=InOrder,
        metavar="[NAME=]URL",
        help="another OpenAI-compatible proxy, pointed at the mock upstream (repeatable); "
        "the --peer-* options after it are its own",
    )
    parser.add_argument(
        "--peer-model",
        action=InOrder,
        metavar="MODEL",
        help=f"the model to ask this peer for (default {DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--peer-key",
        action=InOrder,
        metavar="KEY",
        help="a bearer token for this peer (Authorization: Bearer KEY); never written to "
        "the results",
    )
    parser.add_argument(
        "--peer-header",
        action=InOrder,
        metavar="NAME=VALUE",
        help="a header sent to this peer with every request (repeatable); values are "
        "redacted in the results",
    )
    parser.add_argument(
        "--peer-pid",
        action=InOrder,
        type=int,
        metavar="PID",
        help="this peer's process id: the CPU and RSS of it and of every process under it "
        "are measured, and they are pinned to the gateway's core during the run",
    )


def peers_from(options: list[tuple[str, Any]], parser: argparse.ArgumentParser) -> list[Peer]:
    """The peers the command line names, each with its own options and the shared ones."""
    shared = Peer("", "")
    peers: list[Peer] = []
    for dest, value in options:
        if dest == "peer":
            name, sep, url = value.partition("=")
            if not sep or name.startswith("http"):
                name, url = "", value
            peers.append(Peer(name, url))
            continue
        peer = peers[-1] if peers else shared
        whose = f"peer {peer.name or len(peers)}" if peers else "every peer"
        option = "--" + dest.replace("_", "-")
        if dest == "peer_header":
            header, value = _header(value, parser)
            peer.headers[header] = value
            continue
        if dest == "peer_pid" and not peers:
            parser.error("--peer-pid: give it after the --peer whose process it is")
        attr = dest.removeprefix("peer_")
        if getattr(peer, attr) is not None:
            parser.error(
                f"{option} given twice for {whose}: put each after the --peer it belongs to"
            )
        if dest == "peer_key":
            _check_value(option, value, parser)
        setattr(peer, attr, value)
    for i, peer in enumerate(peers, start=1):
        if not peer.name:
            peer.name = f"peer{i}" if len(peers) > 1 else "peer"
        peer.model = peer.model or shared.model or DEFAULT_MODEL
        peer.key = peer.key or shared.key
        peer.headers = {**shared.headers, **peer.headers}
    if not peers and (shared.model or shared.key or shared.headers):
        parser.error("--peer-model, --peer-key and --peer-header need a --peer to send them to")
    names = [peer.name for peer in peers]
    for name in names:
        if names.count(name) > 1:
            parser.error(f"--peer: two peers are named {name!r}: name them (NAME=URL)")
    return peers


def _header(spec: str, parser: argparse.ArgumentParser) -> tuple[str, str]:
    name, sep, value = spec.partition("=")
    name = name.strip()
    if not sep or not _TOKEN.match(name):
        parser.error(f"--peer-header {name or spec!r}: expected NAME=VALUE, NAME a header name")
    if name.lower() in _RESERVED:
        parser.error(f"--peer-header {name}: the load generator sets this header itself")
    _check_value(f"--peer-header {name}", value, parser)
    return name, value.strip()


def _check_value(option: str, value: str, parser: argparse.ArgumentParser) -> None:
    if any(c in value for c in "\r\n\0"):
        parser.error(
            f"{option}: the value holds a line break (CR, LF) or NUL, which would start "
            "another header in the request: refused"
        )


def redacted_argv(argv: list[str]) -> list[str]:
    """The command line as the results keep it: keys, header values and the credentials of
    a URL replaced with [redacted]."""
    out: list[str] = []
    hide_next = ""
    for arg in argv:
        if hide_next:
            out.append(_redact_one(hide_next, arg))
            hide_next = ""
            continue
        option, sep, value = arg.partition("=")
        if option in ("--peer-key", "--peer-header", "--peer") and arg.startswith("--"):
            if sep:
                out.append(f"{option}={_redact_one(option, value)}")
            else:
                out.append(arg)
                hide_next = option
            continue
        out.append(arg)
    return out


def _redact_one(option: str, value: str) -> str:
    if option == "--peer-key":
        return REDACTED
    if option == "--peer-header":
        name, sep, _ = value.partition("=")
        return f"{name}={REDACTED}" if sep else REDACTED
    return re.sub(r"//[^/@]*@", f"//{REDACTED}@", value)  # --peer: user:password@ in a URL


def secrets(peers: list[Peer]) -> list[str]:
    """What must appear nowhere in the results: keys, and the values of credential headers
    (authorization, *key*, *token*, *secret*, cookies)."""
    found = set()
    for peer in peers:
        if peer.key:
            found.add(peer.key)
        for name, value in peer.headers.items():
            if _SECRET_NAME.search(name) and value:
                found.add(value)
                found.add(value.removeprefix("Bearer ").strip())
    return sorted((s for s in found if s), key=len, reverse=True)
