"""Which `Host` names the API answers to: a page whose name was rebound to our address (DNS rebinding)
sends its own name, so a name we were not told about is refused (`_guard` answers 403)."""

from __future__ import annotations

import ipaddress
from fnmatch import fnmatchcase
from functools import lru_cache
from urllib.parse import urlsplit

from seedcore.config import Settings

_WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})


def host_allowed(host: str, settings: Settings, server_port: str, scheme: str = "http") -> bool:
    """Whether a request's `Host` is allowed. Explicit SEEDCORE_ALLOWED_HOSTS entries match `name` (any port)
    or `name:port`, with `*` wildcards. The default: the bound host and `localhost` (plus 127.0.0.1 and
    [::1] on a loopback bind, any IP address on a wildcard bind), at the port the request came in on."""
    try:
        parts = urlsplit(f"//{host.strip()}")
        name, port = (parts.hostname or "").rstrip("."), parts.port
    except ValueError:
        return False
    if not name:
        return False
    port = port if port is not None else (443 if scheme == "https" else 80)
    shown = f"[{name}]" if ":" in name else name
    if settings.allowed_hosts:
        patterns = _patterns(settings.allowed_hosts)
        return "*" in patterns or any(fnmatchcase(f"{shown}:{port}" if _names_port(p) else shown, p)
                                      for p in patterns)
    if str(port) != server_port:
        return False
    bound = settings.host.strip("[]").lower()
    if bound in _WILDCARD_BINDS:
        return name == "localhost" or _is_ip(name)
    names = {bound, "localhost"}
    if bound == "localhost" or (_is_ip(bound) and ipaddress.ip_address(bound).is_loopback):
        names |= {"127.0.0.1", "::1"}
    return name in names


@lru_cache(maxsize=8)
def _patterns(allowed: str) -> frozenset[str]:
    """The entries as fnmatch patterns (an IPv6 address's `[` taken literally, not as a character class)."""
    return frozenset(entry.strip().lower().replace("[", "[[]") for entry in allowed.split(",") if entry.strip())


def _names_port(pattern: str) -> bool:
    """Whether an allowed-hosts entry ends in `:port` (`[::1]:8000` does, `[::1]` does not)."""
    return ":" in pattern.rsplit("]", 1)[-1]


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
