"""Asks an API's /healthz every ~20 ms and samples its process's resident memory every
~20 ms, appending a line per observation to a file, until it is stopped (or the test
that started it goes away):

    P <sent> <answered> <status, or the name of the error instead>
    M <at> <VmRSS in kB>

Times are time.monotonic(), the same clock in the test's process. Run as a script of its
own process (`python healthz_prober.py URL PID FILE`), using only the standard library
over one kept-alive connection, so that neither the test's work nor its GIL nor a
client library's overhead stands in the latency it measures. api_process.py reads it.
"""

from __future__ import annotations

import http.client
import os
import sys
import threading
import time
import urllib.parse

PERIOD_S = 0.02
PROBE_TIMEOUT_S = 120.0  # a frozen server shows as one very slow probe, not a gap


def main(url: str, pid: int, record: str) -> None:
    parts = urllib.parse.urlsplit(url)
    parent = os.getppid()
    lock = threading.Lock()
    out = open(record, "a", encoding="ascii")  # noqa: SIM115  (open until the process ends)

    def write(line: str) -> None:
        with lock:
            out.write(line + "\n")
            out.flush()

    def sample_memory() -> None:
        while True:
            at = time.monotonic()
            try:
                with open(f"/proc/{pid}/status", encoding="ascii") as status:
                    rss = next(line.split()[1] for line in status if line.startswith("VmRSS:"))
            except (OSError, StopIteration):
                return  # the API process is gone
            write(f"M {at:.6f} {rss}")
            time.sleep(max(0.0, at + PERIOD_S - time.monotonic()))

    threading.Thread(target=sample_memory, daemon=True).start()
    connection: http.client.HTTPConnection | None = None
    while os.getppid() == parent:
        sent = time.monotonic()
        try:
            if connection is None:
                connection = http.client.HTTPConnection(
                    parts.hostname or "127.0.0.1", parts.port, timeout=PROBE_TIMEOUT_S
                )
            connection.request("GET", parts.path)
            response = connection.getresponse()
            response.read()
            status = str(response.status)
        except (OSError, http.client.HTTPException) as exc:
            status = type(exc).__name__
            if connection is not None:
                connection.close()
            connection = None
        write(f"P {sent:.6f} {time.monotonic():.6f} {status}")
        time.sleep(max(0.0, sent + PERIOD_S - time.monotonic()))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
