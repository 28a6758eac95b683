"""Scans every table of the DynamoDB emulator for plaintext PHI.

Run by ./scripts/test after the test suite. Fails (exit 1) when any item
holds something shaped like an E.164 number, a bare 10-15 digit number, or
one of the message texts the tests send. Sealed values are base64url, so a
digit run inside one is bounded by other base64url characters and does not
count.
"""

import os
import re
import sys

import boto3

NUMBER = re.compile(r"(?<![A-Za-z0-9_-])\+?\d{10,15}(?![A-Za-z0-9_-])")
TEXTS = ["Stop. Thank you", "please stop texting me", "Unsubscribe", "STOP ALL", "Test again"]


def main() -> int:
    endpoint = os.environ["SMS_CONSENT_TEST_MOTO"]
    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    tables = client.list_tables()["TableNames"]
    if not tables:
        print("scan: the emulator holds no tables; the DynamoDB tests did not run", file=sys.stderr)
        return 1
    items = 0
    leaks = []
    for table in tables:
        for page in client.get_paginator("scan").paginate(TableName=table):
            for item in page["Items"]:
                items += 1
                # String attributes only: numbers (versions, TTL epochs) are not PHI.
                text = "\n".join(v["S"] for v in item.values() if "S" in v)
                for match in NUMBER.finditer(text):
                    leaks.append((table, item["PK"]["S"], item["SK"]["S"], "number-shaped " + match.group(0)[:4] + "…"))
                for needle in TEXTS:
                    if needle in text:
                        leaks.append((table, item["PK"]["S"], item["SK"]["S"], "message text"))
    if leaks:
        for leak in leaks[:20]:
            print("scan: plaintext in %s %s %s: %s" % leak, file=sys.stderr)
        return 1
    print(f"scan: {items} items in {len(tables)} tables, no phone number or message text in plaintext")
    return 0


if __name__ == "__main__":
    sys.exit(main())
