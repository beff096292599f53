"""Signed links go out byte for byte, a refused link is called refused, and no signature reaches a log.

The fake providers sign every result (and Leonardo upload) link like ByteDance TOS: an HMAC over the
exact raw path and query, with a credential full of ``%2F`` (see ``tests.fakeproviders.common``), and
refuse any link that arrives altered. aiohttp given a plain string re-quotes ``%2F`` into ``/``; the
first test shows the fakes catch exactly that, the others that the bot never does it.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest
import yarl
from aiohttp import web

from bot.errors import ProviderUnavailable, ResultExpired, ResultRefused, redact_links
from bot.fetch import ImageFetcher
from bot.images import ImageStore
from bot.jobs import JobState
from bot.providers.base import GenerationRequest
from bot.providers.http import ProviderHttp
from bot.providers.links import client_session
from bot.storage import Database
from tests.fakeproviders.common import (
    CREDENTIAL,
    DISPOSITION,
    SIGNATURE_PARAM,
    FakeProviderServer,
    Fault,
    link_intact,
    png_bytes,
    refused_link,
    signed_link,
)
from tests.fakeproviders.novita import FakeNovitaServer
from tests.provider_helpers import KEY_ENV, REMOTE_KINDS, engine_for, enqueue, fake_for, provider_for, reference
from tests.test_jobs import RecordingSink, wait_state

STORAGE_REFUSED = {"Code": "AccessDenied", "Message": "Signature does not match.", "EC": "0003-00000015"}
STORAGE_EXPIRED = {"Code": "AccessDenied", "Message": "Request has expired", "EC": "0003-00000012"}


class SignedCdn(FakeProviderServer):
    """An object store / CDN that checks signatures: attachments, a redirect to a signed link, a status URL."""

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/attachments/{name}", self._attachment)
        app.router.add_get("/moved/{name}", self._moved)
        app.router.add_get("/status", self._status)

    def attachment(self, name: str, width: int = 64, height: int = 48) -> str:
        self.files[name] = png_bytes(width, height)
        return signed_link(self.base_url, f"/attachments/{name}")

    async def _attachment(self, request: web.Request) -> web.StreamResponse:
        if not link_intact(request.raw_path):
            self.refused_links.append(request.raw_path)
            return refused_link()
        return web.Response(body=self.files[request.match_info["name"]], content_type="image/png")

    async def _moved(self, request: web.Request) -> web.StreamResponse:
        # Set by hand: web.HTTPFound would itself re-quote the Location.
        location = signed_link("", f"/attachments/{request.match_info['name']}")
        return web.Response(status=302, headers={"Location": location})

    async def _status(self, request: web.Request) -> web.StreamResponse:
        if not link_intact(request.raw_path):
            self.refused_links.append(request.raw_path)
            return refused_link()
        return web.json_response({"status": "COMPLETED"})


def signed_text_in(text: str) -> list[str]:
    """The pieces of a signed query that must never be written to a log."""
    fragments = (SIGNATURE_PARAM, "X-Tos-Credential", CREDENTIAL, "%2F20261101", DISPOSITION[:20], "X-Amz-Signature")
    return [fragment for fragment in fragments if fragment in text]


# -- the fakes catch a re-quoted link --------------------------------------------------------------------------
async def test_the_fakes_refuse_a_link_that_aiohttp_has_requoted() -> None:
    async with FakeNovitaServer() as fake:
        link = fake.host_image(16, 16)
        assert "%2F20261101%2Fcn-beijing" in link
        async with aiohttp.ClientSession() as session:
            async with session.get(link) as requoted:  # a plain string: yarl turns %2F into /
                assert requoted.status == 403
                assert (await requoted.json())["Code"] == "AccessDenied"
            async with session.get(yarl.URL(link, encoded=True)) as exact:
                assert exact.status == 200
    assert len(fake.refused_links) == 1 and "AKLTZmFrZS1rZXk/20261101/cn-beijing" in fake.refused_links[0]


# -- every provider link goes out as written -------------------------------------------------------------------
#: On a session of its own (a provider built by hand) and on the process's shared one (as the bot runs).
SESSIONS = pytest.mark.parametrize("shared", [False, True], ids=["own session", "shared session"])


@SESSIONS
@pytest.mark.parametrize("kind", REMOTE_KINDS)
async def test_every_provider_link_is_requested_exactly_as_written(
    kind: str, shared: bool, store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = client_session() if shared else None
    async with fake_for(kind) as fake:
        monkeypatch.setenv(KEY_ENV, fake.api_key)
        provider = provider_for(kind, fake, store, session=session)
        references = [await reference(store, 640, 480)] if kind in ("leonardo", "taskapi") else []
        count = 2 if kind != "taskapi" or references else 1
        request = GenerationRequest(prompt="a koala", count=count, references=references)
        try:
            result = await provider.generate(request)
        finally:
            await provider.close()
            if session is not None:
                assert not session.closed, "a provider never closes the session it was given"
                await session.close()

    assert len(result.images) == count
    assert fake.refused_links == []
    downloads = [call.raw_target for call in fake.calls if call.path.startswith("/files/")]
    assert sorted(downloads) == sorted(signed_link("", f"/files/{name}") for name in fake.files)
    if kind == "leonardo":  # the presigned upload link, signed by the fake, went out as given too
        uploads = [call.raw_target for call in fake.calls if call.path == "/s3/upload"]
        assert uploads == [signed_link("", "/s3/upload")]


@SESSIONS
async def test_api_links_and_redirects_go_out_as_written(shared: bool, store: ImageStore) -> None:
    """A polling URL handed back by an API (fal's ``status_url``), and a result link that redirects."""
    session = client_session() if shared else None
    async with SignedCdn() as cdn:
        http = ProviderHttp(provider="p", api_key="k", timeout_seconds=5, max_attempts=1, session=session)
        try:
            status = await http.request_json("GET", signed_link(cdn.base_url, "/status"))
            cdn.attachment("moved.png", 30, 20)
            image = await http.download(store, f"{cdn.base_url}/moved/moved.png")
        finally:
            await http.close()
            if session is not None:
                await session.close()
    assert status == {"status": "COMPLETED"}
    assert (image.width, image.height) == (30, 20)
    assert cdn.refused_links == []


@SESSIONS
async def test_discord_attachment_links_are_fetched_exactly(shared: bool, store: ImageStore) -> None:
    session = client_session() if shared else None
    async with SignedCdn() as cdn:
        fetcher = ImageFetcher(store, [cdn.base_url], timeout_seconds=5, max_bytes=1024 * 1024, session=session)
        try:
            direct = await fetcher.fetch(cdn.attachment("photo.png", 64, 48))
            cdn.attachment("again.png", 20, 10)
            redirected = await fetcher.fetch(f"{cdn.base_url}/moved/again.png")
        finally:
            await fetcher.close()
            if session is not None:
                await session.close()
    assert (direct.width, direct.height) == (64, 48) and (redirected.width, redirected.height) == (20, 10)
    assert cdn.refused_links == []


# -- a refused link is not an expired link ---------------------------------------------------------------------
async def test_a_refused_result_link_is_reported_as_refused_not_expired(
    db: Database, store: ImageStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sink = RecordingSink()
    async with FakeNovitaServer() as fake:
        monkeypatch.setenv(KEY_ENV, fake.api_key)
        fake.inject("files", Fault(403, STORAGE_REFUSED), times=5)
        provider = provider_for("novita", fake, store)
        engine = engine_for(db, provider, sink)
        await engine.start()
        job = await enqueue(engine, GenerationRequest(prompt="a koala"))
        failed = await wait_state(db, job.id, JobState.FAILED, JobState.DONE)
        await engine.stop()
        await provider.close()

    assert failed.state == JobState.FAILED and (failed.error or "").startswith("result_refused:")
    ((_, message),) = sink.failures
    assert "storage refused the link" in message and "expired" not in message
    assert len(fake.calls_to("GET", "/files/")) == 1, "a refused link is not fetched again"
    refused = [r.getMessage() for r in caplog.records if "refused result link" in r.getMessage()]
    assert len(refused) == 1 and "/files/img" in refused[0] and "?" not in refused[0].split("(HTTP 403)")[0]
    assert not any("expired" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


@pytest.mark.parametrize(("body", "error"), [(STORAGE_REFUSED, ResultRefused), (STORAGE_EXPIRED, ResultExpired)])
async def test_a_403_is_expiry_only_when_the_store_says_so(
    body: dict[str, Any], error: type[Exception], store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FakeNovitaServer() as fake:
        monkeypatch.setenv(KEY_ENV, fake.api_key)
        fake.inject("files", Fault(403, body))
        provider = provider_for("novita", fake, store)
        try:
            with pytest.raises(error) as caught:
                await provider.generate(GenerationRequest(prompt="x"))
        finally:
            await provider.close()
    assert type(caught.value) is error


async def test_one_refused_link_of_several_keeps_the_others_with_a_notice(
    store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FakeNovitaServer() as fake:
        monkeypatch.setenv(KEY_ENV, fake.api_key)
        fake.inject("files", Fault(403, STORAGE_REFUSED))
        provider = provider_for("novita", fake, store)
        try:
            result = await provider.generate(GenerationRequest(prompt="two koalas", count=2))
        finally:
            await provider.close()
    assert len(result.images) == 1
    assert result.notices == ["1 image(s) could not be fetched: the provider's storage refused the link."]


# -- no signed query string in any log line ----------------------------------------------------------------------
@pytest.mark.parametrize("kind", REMOTE_KINDS)
async def test_no_signed_query_string_in_any_log_line(
    kind: str, db: Database, store: ImageStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A full generate through the engine (uploads, create, polls, downloads) and a failing download."""
    caplog.set_level(logging.DEBUG)
    sink = RecordingSink()
    async with fake_for(kind) as fake:
        monkeypatch.setenv(KEY_ENV, fake.api_key)
        provider = provider_for(kind, fake, store)
        engine = engine_for(db, provider, sink)
        await engine.start()
        references = [await reference(store, 320, 240)] if kind in ("leonardo", "taskapi") else []
        done = await enqueue(engine, GenerationRequest(prompt="a koala", references=references))
        await wait_state(db, done.id, JobState.DONE, JobState.FAILED)
        fake.inject("files", Fault(403, STORAGE_REFUSED), times=5)
        refused = await enqueue(engine, GenerationRequest(prompt="another koala"))
        await wait_state(db, refused.id, JobState.FAILED, JobState.DONE)
        await engine.stop()
        await provider.close()

    assert sink.finished_ids == [done.id] and [job_id for job_id, _ in sink.failures] == [refused.id]
    # aiosqlite's own DEBUG log prints every SQL statement with its parameters, and the saved submission
    # holds the result links (they must be kept to resume after a restart): outside the bot's loggers,
    # it is left to the logging configuration (bot/logging_setup.py) to keep that logger quiet.
    records = [record for record in caplog.records if record.name != "aiosqlite"]
    messages = [record.getMessage() for record in records]
    assert any("downloading result" in message and "/files/img" in message for message in messages)
    assert any("refused result link" in message for message in messages)
    leaks = {message: signed_text_in(message) for message in messages if signed_text_in(message)}
    assert leaks == {}
    assert any(record.name.startswith("bot.") for record in records)


def test_error_details_and_logged_bodies_lose_their_signed_queries() -> None:
    link = signed_link("https://tos.example", "/files/img.png")
    response_repr = f"ClientResponseError(RequestInfo(url=URL('{link}'), method='GET'), status=500)"
    s3_body = f"<Error><Code>AccessDenied</Code><URL>{link}</URL><Hint>X-Amz-Signature=deadbeef</Hint></Error>"
    error = ProviderUnavailable("The provider's result could not be downloaded.", detail=response_repr)
    for text in (error.detail or "", str(error), redact_links(s3_body)):
        assert "https://tos.example/files/img.png?…" in text
        assert CREDENTIAL not in text and link.rsplit("=", 1)[1] not in text and "deadbeef" not in text
    assert redact_links("no links here: 50% done?") == "no links here: 50% done?"


def test_debug_logging_keeps_the_databases_statement_log_quiet() -> None:
    """At DEBUG the bot's own lines are kept, but aiosqlite's log of every statement and its parameters (saved
    submissions hold signed result links) is not."""
    import logging

    from bot.logging_setup import configure_logging

    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("aiosqlite").level)
    try:
        configure_logging("DEBUG")
        assert logging.getLogger("bot.jobs.engine").isEnabledFor(logging.DEBUG)
        assert not logging.getLogger("aiosqlite").isEnabledFor(logging.DEBUG)
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        logging.getLogger("aiosqlite").setLevel(saved[2])
