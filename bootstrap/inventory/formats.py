"""Pure syntax checks for inventory values: names, addresses, durations, versions.

Each parser returns the parsed value or raises ``ValueError`` whose text is the
user-facing reason (the loader adds the field path and line).
"""

from __future__ import annotations

import ipaddress
import posixpath
import re

from ..errors import echo, shorten
from .model import IPAddress

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DURATION = re.compile(r"(?:\d{1,12}[smhd])+")
_DURATION_PART = re.compile(r"(\d{1,12})([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# Digit counts are bounded so that int() never meets Python's 4300-digit limit.
_NUMBER = r"(0|[1-9]\d{0,8})"  # no leading zeros: v1.034.1 is no release and no image tag
# The version is the tag of the control-plane images (registry.k8s.io/kube-apiserver:v1.34.1),
# so only what Kubernetes publishes: releases and their -alpha.N/-beta.N/-rc.N pre-releases.
# Build metadata ("+k3s1") is refused: '+' is not allowed in an image tag.
_KUBE_VERSION = re.compile(rf"v?{_NUMBER}\.{_NUMBER}\.{_NUMBER}(?:-(?:alpha|beta|rc)\.{_NUMBER})?")
# etcd images are tagged <version>-<build> (3.6.4-0).
_ETCD_VERSION = re.compile(rf"v?{_NUMBER}\.{_NUMBER}\.{_NUMBER}(?:-{_NUMBER})?")
_BRACKETED = re.compile(r"\[([^\]]*)\](?::(\d{1,5}))?")
_HOST_PORT = re.compile(r"([^:\[\]]+)(?::(\d{1,5}))?")
# Registry host (DNS name, optional port, or bracketed IPv6) then lower-case path
# components, in the spirit of the distribution reference grammar.
_IMAGE_REPOSITORY = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)
_SSH_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}")
_FLAG_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

MAX_DURATION_SECONDS = 100 * 365 * 86400  # certificates beyond ~100 y overflow nothing useful


def is_dns1123_label(text: str) -> bool:
    return len(text) <= 63 and _LABEL.fullmatch(text) is not None


def is_dns1123_subdomain(text: str) -> bool:
    return len(text) <= 253 and all(is_dns1123_label(part) for part in text.split("."))


def is_wildcard_subdomain(text: str) -> bool:
    return text.startswith("*.") and is_dns1123_subdomain(text[2:])


def is_hostname(text: str) -> bool:
    """A DNS name to connect to; case does not matter for resolution."""
    return is_dns1123_subdomain(text.lower())


def parse_ip(text: str) -> IPAddress:
    if "%" in text:  # ipaddress accepts zone ids (fe80::1%eth0); certificates and URLs cannot
        raise ValueError(f"{echo(text)} is not an IP address (zone ids are not supported)")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{echo(text)} is not an IP address") from None


def looks_like_ip(text: str) -> bool:
    """True for text a user meant as an IP literal (digits and dots, or has a colon)."""
    return ":" in text or re.fullmatch(r"[0-9.]+", text) is not None


def parse_network(text: str) -> IPNetwork:
    if "/" not in text:
        raise ValueError(f"{echo(text)} is not a CIDR (expected address/prefix, e.g. 10.96.0.0/12)")
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        if "host bits set" in str(exc):
            try:
                fixed = ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise ValueError(f"{echo(text)} is not a CIDR") from None
            raise ValueError(f"{echo(text)} has host bits set (did you mean {fixed}?)") from None
        raise ValueError(f"{echo(text)} is not a CIDR") from None


def parse_duration(text: str) -> int:
    """'8760h', '365d', '1h30m' -> seconds. A unit is required."""
    if text.isdigit():
        raise ValueError(f"{echo(text)} needs a unit: s, m, h or d (e.g. {shorten(text)}h)")
    if _DURATION.fullmatch(text) is None:
        raise ValueError(f"{echo(text)} is not a duration (number + unit s, m, h or d, e.g. 8760h)")
    seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    if seconds <= 0:
        raise ValueError(f"{echo(text)} must be longer than zero")
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"{echo(text)} is longer than 100 years")
    return seconds


def parse_kubernetes_version(text: str) -> tuple[int, int, int]:
    match = _KUBE_VERSION.fullmatch(text)
    if match is None:
        if "+" in text:
            raise ValueError(
                f"{echo(text)}: build metadata (+...) cannot be part of an image tag; "
                "the control-plane images are tagged with the upstream release (e.g. v1.34.1)"
            )
        raise ValueError(
            f"{echo(text)} is not a Kubernetes release: vMAJOR.MINOR.PATCH, optionally "
            "-alpha.N, -beta.N or -rc.N (e.g. v1.34.1); it is the control-plane images' tag"
        )
    return int(match[1]), int(match[2]), int(match[3])


def parse_etcd_version(text: str) -> tuple[int, int, int]:
    match = _ETCD_VERSION.fullmatch(text)
    if match is None:
        raise ValueError(f"{echo(text)} is not an etcd version (e.g. 3.6.4 or 3.6.4-0)")
    return int(match[1]), int(match[2]), int(match[3])


def parse_port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError(f"{value} is not a port (1-65535)")
    return value


def parse_endpoint(text: str) -> tuple[str, int | None]:
    """'host', 'host:port', '[v6]:port' or a bare IPv6 literal -> (host, port or None).

    The host is an IP (returned in canonical form) or a lower-case DNS name.
    """
    port_text: str | None
    bracketed = _BRACKETED.fullmatch(text)
    if bracketed is not None:
        host, port_text = bracketed[1], bracketed[2]
        ip = parse_ip(host)
        if ip.version != 6:
            raise ValueError(f"{echo(text)}: brackets are only for IPv6 addresses")
        return str(ip), _endpoint_port(text, port_text)
    if text.count(":") > 1:  # a bare IPv6 literal, no port possible
        try:
            return str(parse_ip(text)), None
        except ValueError:
            raise ValueError(
                f"{echo(text)} is not host[:port] "
                "(write IPv6 as [addr]:port)"
            ) from None
    plain = _HOST_PORT.fullmatch(text)
    if plain is None:
        raise ValueError(f"{echo(text)} is not host[:port]")
    host, port_text = plain[1], plain[2]
    return check_host(host), _endpoint_port(text, port_text)


def _endpoint_port(text: str, port_text: str | None) -> int | None:
    if port_text is None:
        return None
    try:
        return parse_port(int(port_text))
    except ValueError:
        raise ValueError(f"{echo(text)}: {port_text} is not a port (1-65535)") from None


def check_host(text: str) -> str:
    """An IP (canonical form) or a lower-case DNS-1123 name, for certificates and URLs."""
    if looks_like_ip(text):
        return str(parse_ip(text))
    if not is_dns1123_subdomain(text):
        raise ValueError(f"{echo(text)} is neither an IP address nor a lower-case DNS name")
    return text


def check_connect_host(text: str) -> str:
    """An IP or DNS name to open an SSH connection to (case-insensitive)."""
    if looks_like_ip(text):
        return str(parse_ip(text))
    if not is_hostname(text):
        raise ValueError(f"{echo(text)} is neither an IP address nor a DNS name")
    return text


def check_san(text: str) -> str:
    """A certificate subject alternative name: IP, DNS name, or *.wildcard name."""
    if looks_like_ip(text):
        return str(parse_ip(text))
    if is_dns1123_subdomain(text) or is_wildcard_subdomain(text):
        return text
    raise ValueError(
        f"{echo(text)} is not an IP address or a lower-case DNS name (wildcards: *.example.com)"
    )


def check_host_dir(text: str) -> str:
    """An absolute, normalized host directory that may be bind-mounted into a pod."""
    if not text.startswith("/"):
        raise ValueError(f"{echo(text)} is not an absolute path")
    if posixpath.normpath(text) != text or text == "/":
        raise ValueError(
            f"{echo(text)}:"
            " write the directory without '..', '.', '//' or a trailing /"
        )
    if any(c.isspace() for c in text) or ":" in text:
        raise ValueError(f"{echo(text)}: no whitespace or ':' in a mounted path")
    if text == "/etc/kubernetes" or text.startswith("/etc/kubernetes/"):
        raise ValueError(f"{echo(text)}: /etc/kubernetes is mounted by bootstrap itself")
    return text


def check_image_repository(text: str) -> str:
    if "://" in text:
        raise ValueError(
            f"{echo(text)}: no scheme, write the registry host and path "
            "(registry.k8s.io)"
        )
    if _IMAGE_REPOSITORY.fullmatch(text) is None:
        raise ValueError(f"{echo(text)} is not an image repository (e.g. registry.k8s.io)")
    return text


def check_ssh_user(text: str) -> str:
    if _SSH_USER.fullmatch(text) is None:
        raise ValueError(
            f"{echo(text)} is not a user name "
            "(letters, digits, '_', '.', '-'; max 32)"
        )
    return text


def check_flag_name(text: str) -> str:
    if text.startswith("-"):
        raise ValueError(
            f"write the flag without dashes:"
            f" {echo(text.lstrip('-'))}, not {echo(text)}"
        )
    if "=" in text:
        raise ValueError(f"{echo(text)}: give the value as the mapping value, not with '='")
    if _FLAG_NAME.fullmatch(text) is None:
        raise ValueError(f"{echo(text)} is not a flag name")
    return text
