"""The SSRF guard: every class of address a callback may not reach, IPv4 and IPv6, URLs
refused at parse, the address connected to being the one checked, and redirects
re-checked hop by hop (against a real HTTP server on loopback)."""

from __future__ import annotations

import contextlib
import ipaddress
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from pipeline.config import load_settings
from pipeline.errors import FieldError
from pipeline.webhooks.addresses import (
    AddressPolicy,
    CallbackRefused,
    check_target,
    parse_callback,
    refusal,
)
from pipeline.webhooks.callbacks import check_callback_url
from pipeline.webhooks.sender import SendResult, Sent, Timeouts, send

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
PUBLIC = AddressPolicy()


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.7", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("169.254.170.2", "metadata"),
        ("100.100.100.200", "metadata"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.10", "private"),  # documentation (TEST-NET-1)
        ("2001:db8::1", "private"),  # documentation
        # IPv4 inside IPv6: judged as the IPv4 address it reaches
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "metadata"),
        ("64:ff9b::a9fe:a9fe", "metadata"),  # NAT64 of 169.254.169.254
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
        ("::7f00:1", "reserved"),  # IPv4-compatible (deprecated)
    ],
)
def test_each_non_public_class_is_refused_and_named(address: str, why: str) -> None:
    reason = refusal(ipaddress.ip_address(address))
    assert reason is not None and why in reason


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700::1111"])
def test_public_unicast_addresses_pass(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None
    assert check_target(
        f"https://[{address}]/h" if ":" in address else f"https://{address}/h", policy=PUBLIC
    ).address == ipaddress.ip_address(address)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/x", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("/relative/path", "http:// or https://"),
        ("http:///nohost", "has no host"),
        ("http://user:pw@example.com/", "user or password"),
        ("http://exa mple.com/", "space"),
        ("http://example.com:99999/", "not a valid URL"),
    ],
)
def test_malformed_callback_urls_are_refused_with_the_reason(url: str, why: str) -> None:
    with pytest.raises(CallbackRefused, match=why):
        parse_callback(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://[::1]:8080/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://[::ffff:127.0.0.1]/",
        "http://2130706433/",  # 127.0.0.1 as one number: resolved, then refused
        "http://0x7f.1/",
        "http://localhost:9000/",
    ],
)
def test_hosts_that_resolve_to_refused_addresses_are_refused(url: str) -> None:
    with pytest.raises(CallbackRefused, match="public addresses only"):
        check_target(url, policy=PUBLIC)


def test_a_host_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(CallbackRefused, match="does not resolve"):
        check_target("https://no-such-host.invalid/hook", policy=PUBLIC)


def test_allowed_networks_open_exactly_themselves_and_never_metadata() -> None:
    policy = AddressPolicy(
        allowed=(ipaddress.ip_network("10.1.2.0/24"), ipaddress.ip_network("169.254.0.0/16"))
    )
    assert policy.refusal(ipaddress.ip_address("10.1.2.9")) is None
    assert policy.refusal(ipaddress.ip_address("10.1.3.9")) is not None
    assert policy.refusal(ipaddress.ip_address("169.254.1.1")) is None
    assert "metadata" in (policy.refusal(ipaddress.ip_address("169.254.169.254")) or "")
    assert AddressPolicy(allow_private=True).refusal(ipaddress.ip_address("127.0.0.1")) is None


def test_the_request_goes_to_the_checked_address_with_the_host_named() -> None:
    target = check_target("https://[2606:4700::1111]:8443/a/b?c=1", policy=PUBLIC)
    assert target.pinned_url == "https://[2606:4700::1111]:8443/a/b?c=1"
    assert target.host_header == "[2606:4700::1111]:8443"
    plain = check_target("http://8.8.8.8/x", policy=PUBLIC)
    assert plain.pinned_url == "http://8.8.8.8:80/x" and plain.host_header == "8.8.8.8"


def test_submit_check_is_a_field_error_and_needs_a_secret() -> None:
    settings = load_settings(webhook_secret=SECRET)
    with pytest.raises(FieldError) as caught:
        check_callback_url("http://169.254.169.254/", settings, field="callback_url")
    assert caught.value.field == "callback_url" and "metadata" in caught.value.message
    with pytest.raises(FieldError, match="VOICEBATCH_WEBHOOK_SECRET"):
        check_callback_url("https://8.8.8.8/", load_settings(), field="callback_url")
    with pytest.raises(FieldError, match="limit is 2000"):
        check_callback_url("https://8.8.8.8/" + "a" * 2000, settings, field="callback_url")
    assert check_callback_url(None, load_settings(), field="callback_url") is None


# --- redirects, against a real server on loopback -------------------------------------


class _Receiver(BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, tuple[int, dict[str, str]]]] = {}
    seen: ClassVar[list[tuple[str, dict[str, str], bytes]]] = []
    release: ClassVar[threading.Event] = threading.Event()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        self.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        if self.path == "/hang":
            self.release.wait(30)  # answers nothing until the test is over
            return
        status, headers = self.routes.get(self.path, (404, {}))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        answer = b"x" * (8 << 20) if self.path == "/big-error" else b""
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the sender stopped reading: as it should
            self.wfile.write(answer)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    _Receiver.seen = []
    _Receiver.release = threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    _Receiver.routes = {
        "/ok": (200, {}),
        "/moved": (308, {"location": "/ok"}),
        "/to-metadata": (307, {"location": "http://169.254.169.254/latest/meta-data/"}),
        "/to-v6-loopback": (302, {"location": "http://[::1]/hook"}),
        "/to-mapped": (301, {"location": "http://[::ffff:10.0.0.1]/hook"}),
        "/to-private": (303, {"location": "http://10.0.0.1/hook"}),
        "/loop": (307, {"location": "/loop"}),
        "/big-error": (500, {}),
    }
    yield base
    _Receiver.release.set()
    server.shutdown()
    server.server_close()


LOOPBACK_ONLY = AddressPolicy(allowed=(ipaddress.ip_network("127.0.0.1/32"),))
FAST = Timeouts(connect=2, read=5)


def _send(url: str) -> SendResult:
    return send(
        url, body=b'{"a":1}', headers={"webhook-id": "msg_x"}, timeouts=FAST, policy=LOOPBACK_ONLY
    )


def test_an_allowed_redirect_is_followed_with_the_same_post(receiver: str) -> None:
    result = _send(f"{receiver}/moved")
    assert result == SendResult(Sent.OK, 200)
    assert [path for path, _, _ in _Receiver.seen] == ["/moved", "/ok"]
    _, headers, body = _Receiver.seen[1]
    assert body == b'{"a":1}' and headers["webhook-id"] == "msg_x"
    assert headers["host"] == receiver.removeprefix("http://")


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/to-metadata", "metadata"),
        ("/to-v6-loopback", "loopback"),
        ("/to-mapped", "private"),
        ("/to-private", "private"),
    ],
)
def test_a_redirect_to_a_refused_address_is_refused_without_connecting(
    receiver: str, path: str, why: str
) -> None:
    result = _send(f"{receiver}{path}")
    assert result.sent == Sent.REFUSED
    assert result.error is not None
    assert result.error.startswith("redirect to ") and why in result.error
    assert [p for p, _, _ in _Receiver.seen] == [path]  # nothing else was asked


def test_a_redirect_loop_ends(receiver: str) -> None:
    result = _send(f"{receiver}/loop")
    assert result.sent == Sent.FAILED and "redirects" in (result.error or "")


def test_the_first_hop_is_checked_too(receiver: str) -> None:
    result = send(f"{receiver}/ok", body=b"{}", headers={}, timeouts=FAST, policy=PUBLIC)
    assert result.sent == Sent.REFUSED and "loopback" in (result.error or "")
    assert _Receiver.seen == []


def test_a_receiver_that_never_answers_times_out(receiver: str) -> None:
    result = send(
        f"{receiver}/hang",
        body=b"{}",
        headers={},
        timeouts=Timeouts(connect=2, read=0.5),
        policy=LOOPBACK_ONLY,
    )
    assert result.sent == Sent.TIMEOUT and (result.error or "").startswith("timed out")


def test_only_the_start_of_a_huge_error_answer_is_kept(receiver: str) -> None:
    result = _send(f"{receiver}/big-error")
    assert result.sent == Sent.FAILED and result.status_code == 500
    assert result.error is not None and len(result.error) <= 500
    assert result.error.startswith("HTTP 500: xxx")
