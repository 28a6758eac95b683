"""moto's server, answering one request at a time.

moto applies a DynamoDB TransactWriteItems by deep-copying each table it
touches and putting the copies back when a condition fails; a write that
another request made in the meantime is lost with it. DynamoDB never loses a
committed write, so the tests run the emulator serialized: requests are
still accepted concurrently, and handled one after another.

    .tools/moto/bin/python scripts/moto_server.py -H 127.0.0.1 -p 5000
"""

import sys
import threading

from moto import server
from moto.moto_server import werkzeug_app

_one_at_a_time = threading.Lock()
_handle = werkzeug_app.DomainDispatcherApplication.__call__


def _serialized(self, environ, start_response):
    with _one_at_a_time:
        return _handle(self, environ, start_response)


werkzeug_app.DomainDispatcherApplication.__call__ = _serialized

if __name__ == "__main__":
    server.main(sys.argv[1:])
