"""Applies the SAM transform offline, so that CloudFormation Guard rules
(which check AWS::Lambda::Function, AWS::IAM::Role, ...) see the resources
SAM will create. Usage: sam_transform.py TEMPLATE OUTPUT.json

No AWS call: managed policy ARNs resolve to nothing, and each function's
code location is a placeholder s3:// URI.
"""

import json
import os
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class NoManagedPolicies:
    """Stands in for the IAM lookup of AWS managed policy names."""

    def load(self):
        return {}


def main() -> int:
    source, target = sys.argv[1], sys.argv[2]
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with open(source) as f:
        template = yaml_parse(f.read())
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") == "AWS::Serverless::Function":
            resource.setdefault("Properties", {})["CodeUri"] = "s3://placeholder-bucket/function.zip"
    globals_function = template.get("Globals", {}).get("Function", {})
    if "CodeUri" in globals_function:
        globals_function["CodeUri"] = "s3://placeholder-bucket/function.zip"
    transformed = transform(template, {}, NoManagedPolicies())
    with open(target, "w") as f:
        json.dump(transformed, f, indent=1, default=str)
    print(f"sam_transform: {len(transformed.get('Resources', {}))} resources after the transform -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
