"""Where a webhook may be sent: public addresses only, unless the operator allows more.

A webhook URL is chosen by a user, so without this check the server would post to its
own loopback, the cloud metadata address or the internal network on their behalf
(SSRF). The address is checked when the endpoint is registered (for a clear form
error) and again, after resolving, at every delivery (DNS can change), and the
connection goes to the address that was checked, not to a second lookup.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

MAX_URL = 2048

IPv4 = ipaddress.IPv4Address
IPv6 = ipaddress.IPv6Address
# IPv6 spellings that carry an IPv4 address, and where it sits (low bit of its 32):
# the embedded address must be public too, or `[::ffff:0:7f00:1]` reaches loopback.
_EMBEDDING = (
    (ipaddress.ip_network("::ffff:0:0/96"), 0),  # IPv4-mapped
    (ipaddress.ip_network("::ffff:0:0:0/96"), 0),  # IPv4-translated (SIIT, RFC 2765)
    (ipaddress.ip_network("::/96"), 0),  # IPv4-compatible (deprecated, RFC 4291)
    (ipaddress.ip_network("64:ff9b::/96"), 0),  # NAT64 well-known prefix (RFC 6052)
    (ipaddress.ip_network("2002::/16"), 80),  # 6to4 (RFC 3056)
)
# Never a webhook's address, whatever Python's tables say (they lag the IANA registries
# in older versions): local-use NAT64 (RFC 8215), Teredo, site-local (deprecated,
# RFC 3879), the 6to4 relay anycast (deprecated, RFC 7526).
_NEVER = tuple(
    ipaddress.ip_network(n) for n in ("64:ff9b:1::/48", "2001::/32", "fec0::/10", "192.88.99.0/24")
)


class TargetRefused(ValueError):
    """The URL may not be called; the message is safe to show to its owner."""


def _public(ip: IPv4 | IPv6) -> bool:
    """Global unicast, and so is every IPv4 address it embeds (ASVS 12.6.1)."""
    if any(ip in net for net in _NEVER if net.version == ip.version):
        return False
    if isinstance(ip, IPv6):
        for net, shift in _EMBEDDING:
            if ip in net:
                if int(ip) >> shift & 0xFFFFFFFF in (0, 1):  # :: and ::1 themselves
                    return False
                return _public(IPv4(int(ip) >> shift & 0xFFFFFFFF))
    return ip.is_global and not ip.is_multicast


def parse_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path with query) of an http(s) URL, or TargetRefused."""
    if len(url) > MAX_URL:
        raise TargetRefused(f"use a URL of at most {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused("that is not a valid URL") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused("use an http:// or https:// URL")
    if parts.username or parts.password:
        raise TargetRefused("put no user name or password in the URL")
    if parts.fragment:
        raise TargetRefused("a webhook URL has no #fragment")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), path


def resolve(host: str, port: int, *, allow_private: bool) -> str:
    """The address to connect to. Every address the name has must be public: a name
    with one public and one private address could be used to reach the private one."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise TargetRefused(f"the host name {host!r} does not resolve") from exc
    addresses = [info[4][0] for info in infos]
    if not addresses:
        raise TargetRefused(f"the host name {host!r} does not resolve")
    if not allow_private:
        for address in addresses:
            if not _public(ipaddress.ip_address(address.split("%", 1)[0])):
                raise TargetRefused(
                    "that URL points to a private, loopback or reserved address, "
                    "which webhooks may not call"
                )
    return addresses[0]


def check(url: str, *, allow_private: bool) -> None:
    """Raise TargetRefused when `url` may not be registered."""
    _, host, port, _ = parse_url(url)
    resolve(host, port, allow_private=allow_private)
