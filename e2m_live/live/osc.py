"""OSC transport: UDP and TCP servers, replies, and feedback to controllers.

Packets are parsed with python-osc's :class:`~pythonosc.osc_packet.OscPacket`; each message goes
to a handler ``(address, args) -> [(reply_address, reply_args), ...]`` whose replies go back to
the sender (UDP: to the sender's address and port; TCP: on the same connection, in that
connection's framing). Nothing a client sends can raise out of the server: malformed packets
get an ``/e2m/error`` reply.

TCP framing is detected per connection from the first byte: ``0xC0`` starts OSC 1.1 (SLIP),
anything else OSC 1.0 (a 4-byte big-endian length before each packet). Bundle time tags are
ignored (messages apply at once; the music changes at bar lines anyway).

The server binds 127.0.0.1 by default. Bound wider, only clients in the allow-list are heard
(loopback only, unless configured).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import socketserver
import struct
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

log = logging.getLogger(__name__)

Reply = tuple[str, Sequence[Any]]
Handler = Callable[[str, list[Any]], list[Reply]]

MAX_PACKET = 65536
SLIP_END, SLIP_ESC, SLIP_ESC_END, SLIP_ESC_ESC = 0xC0, 0xDB, 0xDC, 0xDD
ERROR_ADDRESS = "/e2m/error"


def encode_message(address: str, args: Sequence[Any]) -> bytes:
    """One OSC message: ints as ``i``, floats as ``f``, strings as ``s``, bools as ``T``/``F``."""
    builder = OscMessageBuilder(address)
    for arg in args:
        if isinstance(arg, bool):
            builder.add_arg(arg, OscMessageBuilder.ARG_TYPE_TRUE if arg else OscMessageBuilder.ARG_TYPE_FALSE)
        elif isinstance(arg, int):
            builder.add_arg(int(arg), OscMessageBuilder.ARG_TYPE_INT)
        elif isinstance(arg, float):
            builder.add_arg(float(arg), OscMessageBuilder.ARG_TYPE_FLOAT)
        else:
            builder.add_arg(str(arg), OscMessageBuilder.ARG_TYPE_STRING)
    return builder.build().dgram


def slip_encode(packet: bytes) -> bytes:
    body = packet.replace(bytes([SLIP_ESC]), bytes([SLIP_ESC, SLIP_ESC_ESC]))
    body = body.replace(bytes([SLIP_END]), bytes([SLIP_ESC, SLIP_ESC_END]))
    return bytes([SLIP_END]) + body + bytes([SLIP_END])


def slip_decode(frame: bytes) -> bytes:
    out = bytearray()
    escaped = False
    for byte in frame:
        if escaped:
            out.append(SLIP_END if byte == SLIP_ESC_END else SLIP_ESC if byte == SLIP_ESC_ESC else byte)
            escaped = False
        elif byte == SLIP_ESC:
            escaped = True
        else:
            out.append(byte)
    return bytes(out)


def length_prefix(packet: bytes) -> bytes:
    return struct.pack("!I", len(packet)) + packet


class ClientFilter:
    """Which client addresses may talk to the server."""

    def __init__(self, host: str, allow: Iterable[str] = ()) -> None:
        self.networks = [ipaddress.ip_network(entry, strict=False) for entry in allow]
        self.open_to_all = False
        if not self.networks:
            self.networks = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
        self._warned: set[str] = set()

    def allows(self, client_ip: str) -> bool:
        try:
            ip = ipaddress.ip_address(client_ip.split("%")[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        ok = any(ip in network for network in self.networks if network.version == ip.version)
        if not ok and client_ip not in self._warned:
            self._warned.add(client_ip)
            log.warning("refusing client %s (OSC or browser): not in the allow-list", client_ip)
        return ok


class _QuietPythonOsc(logging.Filter):
    """python-osc logs every odd bundle on the *root* logger; the sender already gets an
    /e2m/error, and a flood of bad packets must not turn into a flood of log writes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pythonosc" not in record.pathname


def quiet_python_osc_logging() -> None:
    root = logging.getLogger()
    if not any(isinstance(f, _QuietPythonOsc) for f in root.filters):
        root.addFilter(_QuietPythonOsc())


BUNDLE_PREFIX = b"#bundle\x00"
MAX_BUNDLE_DEPTH = 8


def parse_messages(data: bytes, depth: int = 0) -> list[OscMessage]:
    """The messages of a packet, bundles flattened (time tags ignored); raises ValueError.

    Bundles are walked here rather than by python-osc, whose bundle parser loops forever on a
    negative element size (found by our fuzz test)."""
    if not data.startswith(BUNDLE_PREFIX):
        try:
            return [OscMessage(data)]
        except Exception as error:
            raise ValueError(str(error)) from None
    if depth >= MAX_BUNDLE_DEPTH:
        raise ValueError(f"bundles nested deeper than {MAX_BUNDLE_DEPTH}")
    index = len(BUNDLE_PREFIX) + 8  # prefix, then the 64-bit time tag
    if len(data) < index:
        raise ValueError("bundle too short for its time tag")
    messages: list[OscMessage] = []
    while index < len(data):
        if index + 4 > len(data):
            raise ValueError("truncated bundle element size")
        (size,) = struct.unpack(">i", data[index : index + 4])
        index += 4
        if size <= 0 or size % 4 or index + size > len(data):
            raise ValueError(f"bad bundle element size {size}")
        messages += parse_messages(data[index : index + size], depth + 1)
        index += size
    return messages


def handle_packet(data: bytes, handler: Handler) -> list[Reply]:
    """Parse one packet and run ``handler`` on each message; never raises."""
    try:
        messages = parse_messages(data)
    except Exception as error:
        return [(ERROR_ADDRESS, ["", f"malformed OSC packet ({len(data)} bytes): {error}"[:200]])]
    replies: list[Reply] = []
    for message in messages:
        try:
            replies += handler(message.address, list(message.params))
        except Exception as error:  # a handler bug must not take the server down
            log.exception("OSC handler failed on %s", message.address)
            replies.append((ERROR_ADDRESS, [message.address, f"internal error: {error}"[:200]]))
    return replies


class _UDPHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: _UDPServer = self.server  # type: ignore[assignment]
        data, sock = self.request
        if not server.filter.allows(self.client_address[0]):
            return
        server.on_client(self.client_address)
        for address, args in handle_packet(data, server.handler):
            try:
                sock.sendto(encode_message(address, args), self.client_address)
            except OSError as error:
                log.debug("reply to %s failed: %s", self.client_address, error)


class _UDPServer(socketserver.UDPServer):
    allow_reuse_address = True
    max_packet_size = MAX_PACKET

    def __init__(
        self,
        address: tuple[str, int],
        handler: Handler,
        client_filter: ClientFilter,
        on_client: Callable[[tuple], None],
    ) -> None:
        self.handler = handler
        self.filter = client_filter
        self.on_client = on_client
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        super().__init__(address, _UDPHandler)


class TcpConnection:
    """A TCP client: framing is detected from its first byte; replies use the same framing."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.slip: bool | None = None
        self._lock = threading.Lock()

    def send(self, address: str, args: Sequence[Any]) -> bool:
        packet = encode_message(address, args)
        framed = slip_encode(packet) if self.slip else length_prefix(packet)
        try:
            with self._lock:
                self.sock.sendall(framed)
            return True
        except OSError:
            return False


class _TCPHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: _TCPServer = self.server  # type: ignore[assignment]
        if not server.filter.allows(self.client_address[0]):
            return
        connection = TcpConnection(self.request)
        server.connections.add(connection)
        try:
            self._serve(connection, server)
        except OSError:
            pass
        finally:
            server.connections.discard(connection)

    def _serve(self, connection: TcpConnection, server: _TCPServer) -> None:
        buffer = b""
        while True:
            chunk = self.request.recv(8192)
            if not chunk:
                return
            buffer += chunk
            if connection.slip is None:
                connection.slip = buffer[0] == SLIP_END
            packets, buffer, fatal = (_split_slip if connection.slip else _split_prefixed)(buffer)
            for packet in packets:
                for address, args in handle_packet(packet, server.handler):
                    connection.send(address, args)
            if fatal:
                connection.send(ERROR_ADDRESS, ["", fatal])
                return


def _split_prefixed(buffer: bytes) -> tuple[list[bytes], bytes, str | None]:
    packets: list[bytes] = []
    while len(buffer) >= 4:
        (length,) = struct.unpack("!I", buffer[:4])
        if length > MAX_PACKET:
            return packets, b"", f"OSC 1.0 packet length {length} exceeds {MAX_PACKET}: closing"
        if len(buffer) < 4 + length:
            break
        packets.append(buffer[4 : 4 + length])
        buffer = buffer[4 + length :]
    return packets, buffer, None


def _split_slip(buffer: bytes) -> tuple[list[bytes], bytes, str | None]:
    *frames, rest = buffer.split(bytes([SLIP_END]))
    if len(rest) > 2 * MAX_PACKET:
        return [], b"", f"OSC 1.1 frame longer than {MAX_PACKET} bytes: closing"
    return [slip_decode(f) for f in frames if f], rest, None


class _TCPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Handler, client_filter: ClientFilter) -> None:
        self.handler = handler
        self.filter = client_filter
        self.connections: set[TcpConnection] = set()
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _TCPHandler)


class OscServer:
    """UDP and TCP OSC servers on ``host``; ``udp_port``/``tcp_port`` 0 picks a free port, None
    disables. :meth:`broadcast` sends feedback to recent UDP clients, TCP clients and the
    configured feedback targets."""

    def __init__(
        self,
        handler: Handler,
        host: str = "127.0.0.1",
        udp_port: int | None = 9000,
        tcp_port: int | None = 9001,
        allow: Iterable[str] = (),
        feedback: Iterable[tuple[str, int]] = (),
        reply_to_senders: bool = True,
        max_udp_clients: int = 8,
    ) -> None:
        quiet_python_osc_logging()
        self.host = host
        self.filter = ClientFilter(host, allow)
        self.feedback_targets = list(feedback)
        self.reply_to_senders = reply_to_senders
        self._udp_clients: list[tuple] = []
        self._max_udp_clients = max_udp_clients
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.udp: _UDPServer | None = None
        self.tcp: _TCPServer | None = None
        if udp_port is not None:
            self.udp = _UDPServer((host, udp_port), handler, self.filter, self._remember)
        if tcp_port is not None:
            self.tcp = _TCPServer((host, tcp_port), handler, self.filter)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._feedback_socket = socket.socket(family, socket.SOCK_DGRAM)

    @property
    def udp_port(self) -> int | None:
        return self.udp.server_address[1] if self.udp else None

    @property
    def tcp_port(self) -> int | None:
        return self.tcp.server_address[1] if self.tcp else None

    def start(self) -> None:
        for server, name in ((self.udp, "e2m-osc-udp"), (self.tcp, "e2m-osc-tcp")):
            if server is not None:
                thread = threading.Thread(
                    target=server.serve_forever, kwargs={"poll_interval": 0.2}, name=name, daemon=True
                )
                thread.start()
                self._threads.append(thread)

    def close(self) -> None:
        for server in (self.udp, self.tcp):
            if server is not None:
                server.shutdown()
                server.server_close()
        for connection in list(self.tcp.connections if self.tcp else ()):
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)
        self._feedback_socket.close()

    def _remember(self, client: tuple) -> None:
        if not self.reply_to_senders:
            return
        with self._lock:
            if client in self._udp_clients:
                self._udp_clients.remove(client)
            self._udp_clients.append(client)
            del self._udp_clients[: -self._max_udp_clients]

    def send_to_feedback_targets(self, messages: Sequence[Reply]) -> None:
        """Send to the configured feedback targets only (e.g. a ``/e2m/status`` reply, for
        controllers that receive on another socket than they send from)."""
        packets = [encode_message(a, args) for a, args in messages]
        for target in self.feedback_targets:
            for packet in packets:
                try:
                    self._feedback_socket.sendto(packet, target)
                except OSError as error:
                    log.debug("feedback to %s failed: %s", target, error)
                    break

    def broadcast(self, messages: Sequence[Reply]) -> None:
        """Send feedback messages to every listener; failures are logged, never raised."""
        packets = [encode_message(a, args) for a, args in messages]
        with self._lock:
            clients = list(self._udp_clients)
        udp_sock = self.udp.socket if self.udp else self._feedback_socket
        for target in clients:
            for packet in packets:
                try:
                    udp_sock.sendto(packet, target)
                except OSError:
                    break
        for target in self.feedback_targets:
            for packet in packets:
                try:
                    self._feedback_socket.sendto(packet, target)
                except OSError as error:
                    log.debug("feedback to %s failed: %s", target, error)
                    break
        for connection in list(self.tcp.connections if self.tcp else ()):
            for address, args in messages:
                if not connection.send(address, args):
                    break
