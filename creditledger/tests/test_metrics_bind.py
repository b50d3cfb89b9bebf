"""The worker's and the consumer's metrics listen on loopback unless told otherwise."""

from __future__ import annotations

import urllib.request

from creditledger.devstack import free_port
from creditledger.metrics import metrics_serve


def test_metrics_listen_on_loopback_by_default():
    server = metrics_serve(free_port(), include_outbox=False)
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert b"creditledger_transfers_failed" in response.read()
    finally:
        server.shutdown()
        server.server_close()


def test_metrics_listen_where_metrics_bind_address_says(settings):
    settings.METRICS = {**settings.METRICS, "BIND_ADDRESS": "0.0.0.0"}  # noqa: S104 - what compose asks for
    server = metrics_serve(free_port(), include_outbox=False)
    try:
        assert server.server_address[0] == "0.0.0.0"  # noqa: S104
    finally:
        server.shutdown()
        server.server_close()
