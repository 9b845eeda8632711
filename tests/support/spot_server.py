"""A fake cloud metadata server (AWS IMDSv2 and GCP) for spot-notice tests."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeMetadata:
    """Serves AWS and GCP spot endpoints; set `aws_action`, `aws_rebalance` or
    `gcp_preempted` to raise a notice. Records which paths were asked for."""

    def __init__(self) -> None:
        self.aws_action: str | None = None
        self.aws_rebalance: str | None = None
        self.gcp_preempted = False
        self.paths: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: str = "") -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:
                fake.paths.append(self.path)
                if self.path == "/latest/api/token" and self.headers.get(
                    "X-aws-ec2-metadata-token-ttl-seconds"
                ):
                    self._send(200, "token-123")
                else:
                    self._send(400)

            def do_GET(self) -> None:
                fake.paths.append(self.path)
                if self.path.startswith("/latest/"):
                    if self.headers.get("X-aws-ec2-metadata-token") != "token-123":
                        self._send(401)
                    elif self.path.endswith("/spot/instance-action") and fake.aws_action:
                        self._send(200, fake.aws_action)
                    elif self.path.endswith("/rebalance") and fake.aws_rebalance:
                        self._send(200, fake.aws_rebalance)
                    else:
                        self._send(404)
                elif self.path.startswith("/computeMetadata/v1/instance/preempted"):
                    if self.headers.get("Metadata-Flavor") != "Google":
                        self._send(403)
                    else:
                        self._send(200, "TRUE" if fake.gcp_preempted else "FALSE")
                else:
                    self._send(404)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
