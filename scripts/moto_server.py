"""moto's server, answering one request at a time.

moto applies a DynamoDB TransactWriteItems by deep-copying each table it
touches and putting the copies back when a condition fails; a write that
another request made in the meantime is lost with it. DynamoDB never loses a
committed write, so the tests run the emulator serialized: requests are
still accepted concurrently, and handled one after another.

With SMS_CONSENT_MOTO_TIMES set to a file, each request's time in the
emulator (from its request line read to its answer written, waiting for its
turn included) is appended to it as two `time.monotonic()` readings (the
clock every process on this machine shares), one request a line:
`scripts/bench/coldstart.py` takes that time out of an init.

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


def _serialized(self, environ, start_response):
    with _one_at_a_time:
        return _handle(self, environ, start_response)


werkzeug_app.DomainDispatcherApplication.__call__ = _serialized

if os.environ.get("SMS_CONSENT_MOTO_TIMES"):
    _times = open(os.environ["SMS_CONSENT_MOTO_TIMES"], "a", buffering=1)
    _parse = serving.WSGIRequestHandler.parse_request
    _run = serving.WSGIRequestHandler.run_wsgi

    def _parse_timed(self):
        self.sms_consent_began = time.monotonic()
        return _parse(self)

    def _run_timed(self):
        try:
            return _run(self)
        finally:
            _times.write(f"{self.sms_consent_began:.6f} {time.monotonic():.6f}\n")

    serving.WSGIRequestHandler.parse_request = _parse_timed
    serving.WSGIRequestHandler.run_wsgi = _run_timed

if __name__ == "__main__":
    server.main(sys.argv[1:])
