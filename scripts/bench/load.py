"""Load on the local server (embedded store), with wrk: `/healthz`, one
authorization, a batch of 100, and the Twilio webhook route, each measured in
the same run; prints requests/s, p50/p99 and the ratio to `/healthz`.

Run by `scripts/bench-http` (which builds the server and installs wrk):

    python3 scripts/bench/load.py --server BIN --wrk WRK [--data-dir DIR] [--numbers N]
        [--connections 32] [--threads 2] [--duration 10]

Without --data-dir the ledger is made in a temporary directory and seeded
with --numbers numbers (through the Twilio webhook, as patients' replies: a
tenth STOP, the rest START). With --data-dir an existing ledger is used as it
is (e.g. the 1M-number import); give its config with --config, whose
`[[api_keys]]` must hold an `authorize` key whose plain token is
--api-key, and --numbers-file with numbers known to it (one a line), or the
authorizations ask for numbers it does not hold (still one store read each).

Beside the table it prints the latency of `fsync` on the ledger's
filesystem (a probe file of its own in the data directory), measured
just before the webhook route: each webhook waits on a durable commit, so
that route follows the disk. On 2026-11-23 a tmpfs ledger, where fsync
costs nothing, answered 2.2 to 2.4 times as many webhooks at about 0.4 of
the p99, and another process writing to the disk meanwhile took the p99
from about 20 ms to about a second.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

TWILIO_TOKEN = "bench-twilio-token-0123456789abcdef"
API_KEY = "bench-api-key-0123456789abcdef"
CLINIC = "+14155550100"


def config_text(listen, base_url):
    return f"""
[server]
listen = "{listen}"
public_base_url = "{base_url}"

[[programs]]
id = "clinic"
name = "Lakeside Reminders"
organization = "Lakeside Family Clinic"
numbers = ["{CLINIC}"]
help_contact = "555-0100"
frequency = "Msg frequency varies"
categories = ["appointment_reminders", "billing"]
default = "opted_in"
send_rules = []

[providers.twilio]
auth_tokens = ["{TWILIO_TOKEN}"]

[[api_keys]]
name = "bench"
token_sha256 = "{hashlib.sha256(API_KEY.encode()).hexdigest()}"
scopes = ["authorize"]
"""


def patient(i):
    return f"+1415867{i % 10000:04d}" if i < 10000 else f"+1415{2000000 + i:07d}"


def twilio_form(sid, sender, body):
    """The 20 fields of Twilio's incoming-message webhook."""
    return [
        ("ToCountry", "US"), ("ToState", "CA"), ("SmsMessageSid", sid), ("NumMedia", "0"),
        ("ToCity", "SAN FRANCISCO"), ("FromZip", "94105"), ("SmsSid", sid), ("FromState", "CA"),
        ("SmsStatus", "received"), ("FromCity", "SAN FRANCISCO"), ("Body", body), ("FromCountry", "US"),
        ("To", CLINIC), ("MessagingServiceSid", "MG0123456789abcdef0123456789abcdef"), ("ToZip", "94107"),
        ("NumSegments", "1"), ("MessageSid", sid), ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("From", sender), ("ApiVersion", "2010-04-01"),
    ]


def twilio_signature(url, params):
    data = url + "".join(k + v for k, v in sorted(params))
    return base64.b64encode(hmac.new(TWILIO_TOKEN.encode(), data.encode(), hashlib.sha1).digest()).decode()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def lua_string(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def lua_requests(path, requests):
    """A wrk script cycling through pre-built requests (method, path, headers, body)."""
    lines = ["local reqs = {}"]
    for method, target, headers, body in requests:
        h = ", ".join(f"[{lua_string(k)}] = {lua_string(v)}" for k, v in headers.items())
        lines.append(f"reqs[#reqs + 1] = wrk.format({lua_string(method)}, {lua_string(target)}, {{{h}}}, "
                     f"{lua_string(body)})")
    lines += [
        "local i = 0",
        "function setup(thread) thread:set('offset', math.random(#reqs)) end",
        "function init(args) i = offset or 0 end",
        "function request() i = i % #reqs + 1; return reqs[i] end",
        "local statuses = {}",
        "function response(status, headers, body) if status >= 300 then statuses[status] = (statuses[status] or 0) + 1 end end",
    ]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def run_wrk(wrk, args, url, script=None):
    cmd = [wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--latency"]
    if script:
        cmd += ["-s", script]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {}
    for pct, value, unit in re.findall(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        lat[pct] = float(value) * UNITS[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    total = re.search(r"(\d+) requests in", out)
    return rps, lat.get("50"), lat.get("99"), int(errors.group(1)) if errors else 0, int(total.group(1))


def fsync_latency(directory, rounds=500):
    """p50 and p99 (ms) of a 4 KiB overwrite and `fsync` in `directory`,
    the shape of one durable commit's wait on the disk (a probe file of its
    own, written whole before the timing starts, removed after)."""
    fd, path = tempfile.mkstemp(prefix="bench-fsync-", dir=directory)
    waits = []
    try:
        os.write(fd, b"\0" * 64 * 4096)
        os.fsync(fd)
        for i in range(rounds):
            os.pwrite(fd, b"\1" * 4096, (i % 64) * 4096)
            began = time.perf_counter()
            os.fsync(fd)
            waits.append((time.perf_counter() - began) * 1000)
    finally:
        os.close(fd)
        os.unlink(path)
    waits.sort()
    return waits[len(waits) // 2], waits[len(waits) * 99 // 100]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True)
    p.add_argument("--wrk", required=True)
    p.add_argument("--data-dir")
    p.add_argument("--config")
    p.add_argument("--api-key", default=API_KEY)
    p.add_argument("--numbers-file")
    p.add_argument("--numbers", type=int, default=1000)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--duration", type=int, default=10)
    args = p.parse_args()

    work = tempfile.mkdtemp(prefix="bench-http-")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    if args.config:
        config = args.config
    else:
        config = os.path.join(work, "config.toml")
        with open(config, "w") as f:
            f.write(config_text(f"127.0.0.1:{port}", base))
    data_dir = args.data_dir or os.path.join(work, "data")
    server = subprocess.Popen(
        [args.server, "serve", "--config", config, "--data-dir", data_dir, "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "server.log"), "w"),
        env=dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info")),
    )
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1).read()
                break
            except OSError:
                if server.poll() is not None:
                    sys.exit("the server did not start:\n" + open(os.path.join(work, "server.log")).read()[-3000:])
                time.sleep(0.1)
        hook = base + "/webhooks/twilio"
        if args.numbers_file:
            numbers = [line.strip() for line in open(args.numbers_file) if line.strip()]
        elif args.data_dir:
            numbers = [patient(i) for i in range(args.numbers)]
        else:
            numbers = [patient(i) for i in range(args.numbers)]
            started = time.time()
            for i, number in enumerate(numbers):
                params = twilio_form(f"SMseed{i:08d}", number, "STOP" if i % 10 == 0 else "START")
                body = urllib.parse.urlencode(params).encode()
                req = urllib.request.Request(hook, data=body, headers={
                    "X-Twilio-Signature": twilio_signature(hook, params),
                    "Content-Type": "application/x-www-form-urlencoded"})
                urllib.request.urlopen(req).read()
            print(f"seeded {len(numbers)} numbers through the Twilio webhook in {time.time() - started:.1f} s")

        auth = {"Authorization": f"Bearer {args.api_key}", "Content-Type": "application/json"}
        sample = random.Random(1).sample(numbers, min(len(numbers), 1000))
        single = [("POST", "/v1/authorizations", auth,
                   json.dumps({"to": n, "program": "clinic", "category": "appointment_reminders"})) for n in sample]
        batches = []
        for b in range(20):
            chunk = [sample[(b * 100 + j) % len(sample)] for j in range(100)]
            batches.append(("POST", "/v1/authorizations", auth, json.dumps({"requests": [
                {"to": n, "program": "clinic", "category": "appointment_reminders"} for n in chunk]})))
        # New messages (each its own MessageSid), a patient's reply each.
        hooks = []
        for i in range(20000):
            params = twilio_form(f"SMload{os.getpid()}x{i:08d}", sample[i % len(sample)],
                                 "Stop. Thank you" if i % 2 else "START")
            hooks.append(("POST", "/webhooks/twilio", {
                "X-Twilio-Signature": twilio_signature(hook, params),
                "Content-Type": "application/x-www-form-urlencoded"}, urllib.parse.urlencode(params)))
        scripts = {}
        for name, reqs in [("authorize", single), ("batch", batches), ("twilio", hooks)]:
            scripts[name] = os.path.join(work, f"{name}.lua")
            lua_requests(scripts[name], reqs)

        rows = []
        fsync = None
        for name, path, script, per in [
            ("/healthz", "/healthz", None, 1),
            ("authorization (1)", "/v1/authorizations", scripts["authorize"], 1),
            ("authorization (batch of 100)", "/v1/authorizations", scripts["batch"], 100),
            ("Twilio webhook (new message)", "/webhooks/twilio", scripts["twilio"], 1),
        ]:
            if path == "/webhooks/twilio":
                fsync = fsync_latency(data_dir)
            rps, p50, p99, errors, total = run_wrk(args.wrk, args, base + path, script)
            if errors:
                sys.exit(f"{name}: {errors} of {total} answers were not 2xx; see {work}/server.log")
            rows.append((name, rps, p50, p99, per))
        health = rows[0][1]
        print(f"\nwrk -t{args.threads} -c{args.connections} -d{args.duration}s, embedded store, "
              f"{len(numbers)} numbers{' (' + data_dir + ')' if args.data_dir else ''}")
        print(f"{'route':<30} {'req/s':>10} {'decisions/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'of /healthz':>12}")
        for name, rps, p50, p99, per in rows:
            print(f"{name:<30} {rps:>10.0f} {rps * per:>12.0f} {p50:>8.2f} {p99:>8.2f} {rps / health:>11.0%}")
        if fsync:
            print(f"fsync on the ledger's filesystem just before the webhook route: p50 {fsync[0]:.2f} ms, "
                  f"p99 {fsync[1]:.2f} ms (each webhook waits on a durable commit)")
        print("goal: authorization at least 50% of /healthz, p99 under 5 ms at 32 connections")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
