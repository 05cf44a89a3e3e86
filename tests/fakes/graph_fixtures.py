"""pytest fixtures for the fake Graph. Import ``fake_graph`` into a conftest.py to use it."""

from __future__ import annotations

import ssl

import pytest
import trustme
from pytest_httpserver import HTTPServer

from tests.fakes.graph import FakeGraph


@pytest.fixture(scope="session")
def fake_graph_server():
    """One TLS server (free 127.0.0.1 port, private trustme CA) shared by the session.

    Stopping a werkzeug server takes about half a second, so each test gets a fresh
    :class:`FakeGraph` on this server rather than a fresh server.
    """
    ca = trustme.CA()
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=server_ctx)
    server.start()
    try:
        yield server, ca
    finally:
        server.clear()
        if server.is_running():
            server.stop()


@pytest.fixture
def fake_graph(fake_graph_server, monkeypatch):
    """A fresh, empty :class:`FakeGraph` tenant.

    requests lets ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` override ``verify``, so both are unset
    for the test: anything that still read them could not trust the fake's CA.
    """
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    server, ca = fake_graph_server
    server.clear()
    try:
        yield FakeGraph(server, ca)
    finally:
        server.clear()
