"""URL checks shared by every provider's configuration and redirects."""

from __future__ import annotations

from urllib.parse import urlsplit


def http_url(value: str) -> str:
    """`value` if it is an absolute http(s) URL; ValueError otherwise."""
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError(f"must be an absolute http(s) URL, got {value!r}")
    return value


def same_endpoint(registered: str, uri: str) -> bool:
    """Scheme, host (any case), port and path match; the query and fragment are not compared."""
    a, b = urlsplit(registered), urlsplit(uri)
    return (a.scheme, a.netloc.lower(), a.path or "/") == (b.scheme, b.netloc.lower(), b.path or "/")
