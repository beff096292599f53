"""Links the bot did not write (results, presigned uploads, polling and attachment URLs) go out as written.

A string URL handed to aiohttp is parsed by yarl, which re-quotes it: ``%2F %3A %40 %21 %24 %27 %28 %29
%2A %2C %3F %7E`` in a query become ``/ : @ ! $ ' ( ) * , ? ~``. Object stores (ByteDance TOS, S3,
Discord's CDN) check the signature over the exact bytes of the path and query, so the re-quoted link
is refused with 403 and the image is lost although it was billed. ``exact_url`` builds an
already-encoded ``yarl.URL`` instead, so the request target is byte for byte the provider's.
"""

from __future__ import annotations

from urllib.parse import quote

import aiohttp
from yarl import URL

#: Characters that may appear literally in a URI (RFC 3986 unreserved + reserved, plus ``%`` of escapes).
_URI_CHARACTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~:/?#[]@!$&'()*+,;=%"
_URI_SET = frozenset(_URI_CHARACTERS)


def exact_url(url: str | URL) -> URL:
    """``url`` as an encoded ``yarl.URL``: nothing is re-quoted, decoded or normalised.

    Only characters that can never appear in a request line (spaces, non-ASCII, quotes …) are
    percent-encoded, as a browser would; every existing escape and every reserved character stays.
    """
    if isinstance(url, URL):
        return url
    if not _URI_SET.issuperset(url):
        url = quote(url, safe=_URI_CHARACTERS)
    return URL(url, encoded=True)


#: Connections kept by a session: aiohttp's default, or 16 per job the bot generates at once (a job's API
#: calls plus up to 15 result downloads), whichever is more.
DEFAULT_CONNECTIONS = 100
#: Seconds a host name's DNS answer is reused (aiohttp's default is 10).
DNS_CACHE_SECONDS = 300


def client_session(*, workers: int = 0) -> aiohttp.ClientSession:
    """A session for links the bot did not write: providers' APIs, their result links, attachments.

    Redirects are followed as written (``requote_redirect_url=False``). Each request passes its own timeout
    (aiohttp's session default of five minutes is only a backstop). One per process (``Services`` owns it);
    a provider or fetcher built without one (a unit test, a script) opens its own through here and closes it.
    """
    connector = aiohttp.TCPConnector(limit=max(DEFAULT_CONNECTIONS, 16 * workers), ttl_dns_cache=DNS_CACHE_SECONDS)
    return aiohttp.ClientSession(connector=connector, requote_redirect_url=False)


def without_query(url: str | URL) -> str:
    """The link without its query string or fragment, for logs and error details (signatures stay out)."""
    text = str(url)
    return text.split("?", 1)[0].split("#", 1)[0]
