"""Cold starts of the Lambda bootstraps through a local Lambda Runtime API.

For each bootstrap, several times: start it with the Lambda environment
pointing at this emulator (and at moto for SSM, Secrets Manager, KMS and
DynamoDB), serve it one event, and measure

- init ms: from the process's start to its first `invocation/next` (the
  function's own start: config, secrets, keys, Router),
- first-response ms: from the process's start to its first `response`,
- peak RSS: the child's `VmHWM` (/proc) after the invocation,
- own ms (with --moto-times, the file `scripts/moto_server.py` writes):
  the init less the time moto was working on at least one of the
  function's requests (each from its request line read to its answer's
  last byte written, its wait for its turn included). What the function
  did meanwhile (the numbering metadata, the config validation) is left
  out with it; the trips to and from the emulator (the SDK sending and
  reading, the socket, the server accepting the connection) stay in.

The emulator implements what the runtime client calls:
`GET /2018-06-01/runtime/invocation/next`, `POST .../invocation/<id>/response`,
`POST .../invocation/<id>/error` and `POST /2018-06-01/runtime/init/error`.

Run by `scripts/bench-coldstart` (which builds the bootstraps and starts
moto), with moto's Python (it has boto3):

    python scripts/bench/coldstart.py --moto URL --runs 5 NAME=BOOTSTRAP:EVENT ...
"""

import argparse
import http.server
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

API = "/2018-06-01/runtime"


class Invocation:
    """One process's run: the event it gets and what it answered, when."""

    def __init__(self, event):
        self.event = event
        self.start = 0.0
        self.init = None
        self.response = None
        self.body = None
        self.error = None
        self.done = threading.Event()
        self.served = False


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    current = None  # the Invocation under way

    def log_message(self, *args):
        pass

    def _answer(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _read(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self):
        inv = Handler.current
        if self.path != f"{API}/invocation/next" or inv is None:
            return self._answer(404)
        now = time.monotonic()
        if inv.served:
            # The function waits for its next event: there is none; it is
            # stopped once the answer is in.
            inv.done.wait(30)
            time.sleep(60)
            return self._answer(500)
        inv.served = True
        inv.init = now - inv.start
        deadline = int(time.time() * 1000) + 30_000
        self._answer(
            200,
            inv.event,
            [
                ("Content-Type", "application/json"),
                ("Lambda-Runtime-Aws-Request-Id", "00000000-0000-0000-0000-000000000001"),
                ("Lambda-Runtime-Deadline-Ms", str(deadline)),
                ("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:bench"),
                ("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000001"),
            ],
        )

    def do_POST(self):
        inv = Handler.current
        body = self._read()
        if inv is None:
            return self._answer(404)
        if self.path.endswith("/response"):
            inv.response = time.monotonic() - inv.start
            inv.body = body
        elif self.path.endswith("/error"):
            inv.error = body.decode("utf-8", "replace")
        else:
            return self._answer(404)
        self._answer(202, b'{"status":"OK"}', [("Content-Type", "application/json")])
        inv.done.set()


def run_once(bootstrap, event, env, port):
    inv = Invocation(event)
    Handler.current = inv
    env = dict(env, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{port}")
    inv.start = time.monotonic()
    logs = tempfile.TemporaryFile()
    child = subprocess.Popen([bootstrap], env=env, stdout=logs, stderr=subprocess.STDOUT)
    finished = inv.done.wait(30)
    if finished and inv.error is None:
        # Let it reach its next `invocation/next` (it blocks there), as Lambda
        # would freeze it.
        time.sleep(0.05)
    # The peak of the program itself: VmHWM starts again at exec (the
    # rusage of the child would count the forked Python before it).
    peak_kb = 0
    try:
        with open(f"/proc/{child.pid}/status") as status:
            peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        pass
    child.send_signal(signal.SIGKILL)
    child.wait()
    logs.seek(0)
    stderr = logs.read().decode("utf-8", "replace")
    logs.close()
    Handler.current = None
    if not finished or inv.error is not None or inv.response is None:
        raise SystemExit(f"{bootstrap}: no answer ({inv.error or 'timed out'})\n{stderr[-2000:]}")
    return inv, peak_kb / 1024.0, stderr


def busy_within(times_file, start, end):
    """How long moto was answering requests between `start` and `end`
    (seconds; the union of its requests' handling times, clipped)."""
    spans = []
    with open(times_file) as lines:
        for line in lines:
            began, ended = (float(v) for v in line.split())
            if ended > start and began < end:
                spans.append((max(began, start), min(ended, end)))
    busy, reach = 0.0, start
    for began, ended in sorted(spans):
        if ended > reach:
            busy += ended - max(began, reach)
            reach = ended
    return busy


def setup_moto(moto, parameter_name, parameter, secret_name, secret):
    import boto3

    kwargs = dict(endpoint_url=moto, region_name="us-east-1", aws_access_key_id="testing",
                  aws_secret_access_key="testing")
    boto3.client("ssm", **kwargs).put_parameter(Name=parameter_name, Value=parameter, Type="SecureString",
                                                Overwrite=True)
    sm = boto3.client("secretsmanager", **kwargs)
    try:
        sm.create_secret(Name=secret_name, SecretString=secret)
    except sm.exceptions.ResourceExistsException:
        sm.put_secret_value(SecretId=secret_name, SecretString=secret)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--moto", required=True)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--table", default="sms-consent-bench")
    parser.add_argument("--key-id", default="alias/sms-consent-bench")
    parser.add_argument("--parameter-file", required=True)
    parser.add_argument("--secret-file", required=True)
    parser.add_argument("--debug-log", action="store_true", help="print the functions' debug logs (init steps)")
    parser.add_argument("--moto-times", help="the file moto_server.py writes its requests' times to (SMS_CONSENT_MOTO_TIMES)")
    parser.add_argument("functions", nargs="+", help="NAME=BOOTSTRAP:EVENT")
    args = parser.parse_args()

    setup_moto(args.moto, "/sms-consent-bench/config", open(args.parameter_file).read(), "sms-consent-bench/secrets",
               open(args.secret_file).read())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()

    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_LAMBDA_FUNCTION_NAME": "bench",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/bench",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": args.moto,
        "SMS_CONSENT_CONFIG_PARAMETER": "/sms-consent-bench/config",
        "SMS_CONSENT_SECRETS": "sms-consent-bench/secrets",
        "SMS_CONSENT_TABLE": args.table,
        "SMS_CONSENT_KEY_ID": args.key_id,
        "RUST_LOG": "sms_consent=debug" if args.debug_log else "warn",
    }

    rows = []
    for spec in args.functions:
        name, rest = spec.split("=", 1)
        bootstrap, event_file = rest.rsplit(":", 1)
        event = open(event_file, "rb").read()
        inits, responses, rss, owns = [], [], [], []
        for i in range(args.runs):
            inv, peak, stderr = run_once(bootstrap, event, env, port)
            inits.append(inv.init * 1000)
            if args.moto_times:
                owns.append((inv.init - busy_within(args.moto_times, inv.start, inv.start + inv.init)) * 1000)
            responses.append(inv.response * 1000)
            rss.append(peak)
            if args.debug_log and i == args.runs - 1:
                sys.stderr.write(f"--- {name}, last run's log ---\n{stderr}\n")
            status = json.loads(inv.body or b"{}").get("statusCode")
            if name != "hello" and name != "outbox" and status not in (200, 201):
                raise SystemExit(f"{name}: answered {status}: {inv.body[:300]!r}")
        own = statistics.median(owns) if owns else None
        rows.append((name, statistics.median(inits), statistics.median(responses), max(rss), own))

    hello = next((r for r in rows if r[0] == "hello"), None)
    print(f"{'function':<12} {'init ms':>8} {'first response ms':>18} {'peak RSS MB':>12} {'init - hello ms':>16}"
          + (f" {'own ms':>7} {'own - hello ms':>15}" if args.moto_times else ""))
    for name, init, response, rss, own in rows:
        delta = f"{init - hello[1]:+.1f}" if hello else "-"
        line = f"{name:<12} {init:>8.1f} {response:>18.1f} {rss:>12.1f} {delta:>16}"
        if own is not None:
            own_delta = f"{own - hello[4]:+.1f}" if hello else "-"
            line += f" {own:>7.1f} {own_delta:>15}"
        print(line)
    print(f"(medians of {args.runs} cold starts each; peak RSS the largest; goal: init within 10 ms of hello, "
          "peak RSS under 32 MB" + ("; own: the init less the time moto was working on the function's requests"
                                    if args.moto_times else "") + ")")
    server.shutdown()


if __name__ == "__main__":
    main()
