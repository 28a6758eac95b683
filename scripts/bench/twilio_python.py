"""twilio-python's `RequestValidator.validate` alone, on the payload of
`benches/webhooks.rs` (`webhook/twilio/known_sender`): the same 20 fields,
URL and token. Prints the median time per call in microseconds.

    .tools/twilio-bench/bin/python scripts/bench/twilio_python.py
"""

import statistics
import timeit

from twilio.request_validator import RequestValidator

TOKEN = "12345678901234567890123456789012"
URL = "https://consent.example.org/webhooks/twilio"
FORM = [
    ("ToCountry", "US"), ("ToState", "CA"), ("SmsMessageSid", "SM0123456789abcdef0123456789abcdef"),
    ("NumMedia", "0"), ("ToCity", "SAN FRANCISCO"), ("FromZip", "94105"),
    ("SmsSid", "SM0123456789abcdef0123456789abcdef"), ("FromState", "CA"), ("SmsStatus", "received"),
    ("FromCity", "SAN FRANCISCO"), ("Body", "Stop. Thank you"), ("FromCountry", "US"), ("To", "+14155550100"),
    ("MessagingServiceSid", "MG0123456789abcdef0123456789abcdef"), ("ToZip", "94107"), ("NumSegments", "1"),
    ("MessageSid", "SM0123456789abcdef0123456789abcdef"), ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
    ("From", "+14158675309"), ("ApiVersion", "2010-04-01"),
]


def main():
    validator = RequestValidator(TOKEN)
    params = dict(FORM)
    signature = validator.compute_signature(URL, params)
    assert validator.validate(URL, params, signature)
    number = 20000
    runs = timeit.repeat(lambda: validator.validate(URL, params, signature), number=number, repeat=7)
    print(f"{statistics.median(runs) / number * 1e6:.2f}")


if __name__ == "__main__":
    main()
