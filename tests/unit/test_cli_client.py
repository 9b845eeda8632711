"""The CLI's HTTP client and client commands: errors are one line, names are safe."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app
from cli.client import ApiClient, safe_output_path
from pipeline.errors import InputError, RetryableError
from tests.support.services import free_port


@pytest.mark.parametrize("name", ["../x.mp3", "/etc/passwd", "a//b.mp3", "chapters/../../x", ""])
def test_file_names_from_the_server_cannot_escape_the_folder(tmp_path: Path, name: str) -> None:
    with pytest.raises(InputError, match="unsafe file name"):
        safe_output_path(tmp_path, name)


def test_safe_names_land_inside_the_folder(tmp_path: Path) -> None:
    assert safe_output_path(tmp_path, "chapters/01-a.mp3") == tmp_path / "chapters" / "01-a.mp3"


def test_client_needs_a_url_and_a_key_and_reports_an_unreachable_server() -> None:
    with pytest.raises(InputError, match="must start with http"):
        ApiClient("localhost:8000", "k")
    with pytest.raises(InputError, match="no API key"):
        ApiClient("http://localhost:8000", None)
    client = ApiClient(f"http://127.0.0.1:{free_port()}", "k", timeout=2)
    with pytest.raises(RetryableError, match="cannot reach the API"):
        client.job("1c9f5d8e-3a9b-4b0e-8a53-1e2f3a4b5c6d")
    with pytest.raises(InputError, match="is not a job id"):
        client.job("nope")


def test_client_commands_without_a_server_fail_in_one_line(tmp_path: Path) -> None:
    book = tmp_path / "b.md"
    book.write_text("# B\n\nHello.\n")
    runner = CliRunner()
    result = runner.invoke(app, ["submit", str(book)])
    assert result.exit_code == 2
    assert "no API server: pass --server or set VOICEBATCH_API_URL" in result.output
    result = runner.invoke(
        app, ["download", "x", "--server", f"http://127.0.0.1:{free_port()}", "--api-key", "k"]
    )
    assert result.exit_code == 2 and "is not a job id" in result.output
    result = runner.invoke(
        app,
        [
            "status",
            "1c9f5d8e-3a9b-4b0e-8a53-1e2f3a4b5c6d",
            "--server",
            f"http://127.0.0.1:{free_port()}",
            "--api-key",
            "k",
        ],
    )
    assert result.exit_code == 75 and "cannot reach the API" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_keys_are_created_listed_and_revoked(tmp_path: Path) -> None:
    runner = CliRunner()
    created = runner.invoke(app, ["keys", "create", "alice"])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("vb_") and len(key) > 40
    listed = runner.invoke(app, ["keys", "list"])
    assert "alice" in listed.stdout and key not in listed.stdout and key[:11] in listed.stdout
    assert runner.invoke(app, ["keys", "revoke", "alice"]).exit_code == 0
    again = runner.invoke(app, ["keys", "revoke", "alice"])
    assert again.exit_code == 4 and "no live API key 'alice'" in again.output
    assert runner.invoke(app, ["keys", "create", "  "]).exit_code == 2


def test_server_commands_refuse_missing_settings_in_one_line() -> None:
    runner = CliRunner()
    for argv, words in (
        (["api"], "no broker configured: set VOICEBATCH_BROKER_URL"),
        (["worker", "--queues", "render"], "no broker configured"),
        (["flower"], "Flower needs a password: set VOICEBATCH_FLOWER_PASSWORD"),
    ):
        result = runner.invoke(app, argv)
        assert result.exit_code == 2, (argv, result.output)
        assert words in result.output and len(result.output.strip().splitlines()) == 1


def test_client_waits_out_a_rate_limit_and_explains_odd_answers() -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            if self.path.startswith("/v1/jobs/") and len(hits) == 1:
                self.send_response(429)
                self.send_header("Retry-After", "1")
                self.end_headers()
                return
            if self.path.startswith("/v1/jobs/"):
                body = b'{"id": "x", "status": "done"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
            elif self.path.startswith("/v1/jobs"):
                body = b"<html>not an API</html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
            else:
                body = b""
                self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = ApiClient(f"http://127.0.0.1:{server.server_port}", "k", timeout=5)
        job = "1c9f5d8e-3a9b-4b0e-8a53-1e2f3a4b5c6d"
        assert client.job(job)["status"] == "done"  # after one 429 and a 1 s wait
        assert hits == [f"/v1/jobs/{job}"] * 2
        with pytest.raises(InputError, match="did not answer like a voicebatch API"):
            client.jobs()
    finally:
        server.shutdown()
