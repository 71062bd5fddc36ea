"""HTTP for every request maint makes itself: requests, without the user's ``~/.netrc``.

requests reads ``~/.netrc`` (or the file ``$NETRC`` names) and sends the credentials it lists
for a host to that host, those of a ``default`` entry to every host, in place of an
``Authorization`` header the caller set. A smoke check of a shop would carry the operator's
credentials, and a feed's API key would be replaced by them. maint's requests carry only what
the playbook and the inventory give them. What else requests takes from the environment still
applies: proxies (``HTTPS_PROXY``, ``NO_PROXY``) and CA bundles (``REQUESTS_CA_BUNDLE``).

Import this module where a request is made (it imports requests).
"""

from __future__ import annotations

from typing import Any

import requests
from requests.models import PreparedRequest, Response

__all__ = ["Session", "get", "post"]


def _as_given(request: PreparedRequest) -> PreparedRequest:
    """The session's auth: the request as it is (any session auth keeps requests out of ~/.netrc)."""
    return request


class Session(requests.Session):
    """A :class:`requests.Session` that never reads ``~/.netrc`` (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.auth = _as_given

    def rebuild_auth(self, prepared_request: PreparedRequest, response: Response) -> None:
        """On a redirect to another host drop the ``Authorization`` header, as requests does;
        unlike requests, take no credentials from ``~/.netrc`` for the new host."""
        headers = prepared_request.headers
        original = response.request.url
        if "Authorization" in headers and (
            not original or self.should_strip_auth(original, prepared_request.url or "")  # type: ignore[no-untyped-call]
        ):
            del headers["Authorization"]  # an unknown origin counts as another host


def get(url: str, **kwargs: Any) -> Response:
    """``requests.get`` through a :class:`Session` (closed afterwards; the body is read)."""
    with Session() as session:
        return session.get(url, **kwargs)


def post(url: str, **kwargs: Any) -> Response:
    """``requests.post`` through a :class:`Session` (closed afterwards; the body is read)."""
    with Session() as session:
        return session.post(url, **kwargs)
