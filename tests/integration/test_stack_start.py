"""A server of the test stack counts as started only when the process started for it
listens on its port: someone else's server answering there once made every token of a run
look revoked (tests/unit/test_stack_ports.py checks the parts)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_an_api_that_cannot_bind_its_port_fails_its_start_though_another_answers_there(
    database, tmp_path
):
    """Another server answering 200 on the port is not the API started for it."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tests.support.stack import Exited, Stack

    class Healthy(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    foreign = ThreadingHTTPServer(("127.0.0.1", 0), Healthy)
    threading.Thread(target=foreign.serve_forever, daemon=True).start()
    stack = Stack({}, tmp_path, api_port=foreign.server_address[1])
    try:
        with pytest.raises(Exited, match="(?i)address already in use"):
            stack.start_api()
    finally:
        stack.stop()
        foreign.shutdown()
        foreign.server_close()
