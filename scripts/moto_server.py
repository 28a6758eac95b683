"""moto's server, answering one request at a time.

moto applies a DynamoDB TransactWriteItems by deep-copying each table it
touches and putting the copies back when a condition fails; a write that
another request made in the meantime is lost with it. DynamoDB never loses a
committed write, so the tests run the emulator serialized: requests are
still accepted concurrently, and handled one after another.

With SMS_CONSENT_MOTO_TIMES set to a file, each request's time in the
emulator (from its request line read to the last byte of its answer written,
waiting for its turn included; not werkzeug's wait for the client to close
the connection after that) is appended to it as two `time.monotonic()`
readings (the clock every process on this machine shares), one request a
line: `scripts/bench/coldstart.py` reads them.

    .tools/moto/bin/python scripts/moto_server.py -H 127.0.0.1 -p 5000
"""

import os
import sys
import threading
import time

from moto import server
from moto.moto_server import werkzeug_app
from werkzeug import serving

_one_at_a_time = threading.Lock()
_handle = werkzeug_app.DomainDispatcherApplication.__call__
_times = os.open(os.environ["SMS_CONSENT_MOTO_TIMES"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600) \
    if os.environ.get("SMS_CONSENT_MOTO_TIMES") else None
_request = threading.local()  # werkzeug handles each connection on its own thread


def _timed(chunks):
    """The answer's chunks as werkzeug writes them; the time is taken once
    the last one is written."""
    try:
        yield from chunks
    finally:
        line = f"{_request.began:.6f} {time.monotonic():.6f}\n"
        os.write(_times, line.encode())  # one write on O_APPEND: whole lines
        if hasattr(chunks, "close"):
            chunks.close()


def _serialized(self, environ, start_response):
    with _one_at_a_time:
        answer = _handle(self, environ, start_response)
    return answer if _times is None else _timed(answer)


werkzeug_app.DomainDispatcherApplication.__call__ = _serialized

if _times is not None:
    _parse = serving.WSGIRequestHandler.parse_request

    def _parse_timed(self):
        _request.began = time.monotonic()
        return _parse(self)

    serving.WSGIRequestHandler.parse_request = _parse_timed

if __name__ == "__main__":
    server.main(sys.argv[1:])
