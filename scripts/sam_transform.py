"""Applies the SAM transform offline, so that CloudFormation Guard rules
(which check AWS::Lambda::Function, AWS::IAM::Role, ...) see the resources
SAM will create. Usage: sam_transform.py TEMPLATE OUTPUT.json

No AWS call: managed policy ARNs resolve to nothing, and each function's
code location is a placeholder s3:// URI.
"""

import json
import os
import re
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class NoManagedPolicies:
    """Stands in for the IAM lookup of AWS managed policy names."""

    def load(self):
        return {}


def references(node, names):
    """Every resource a value refers to: Ref, Fn::GetAtt, ${...} in Fn::Sub,
    inside any function (cfn-lint misses some, such as those under Fn::If)."""
    found = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and value in names:
                found.add(value)
            elif key == "Fn::GetAtt":
                target = value[0] if isinstance(value, list) else str(value).split(".")[0]
                if target in names:
                    found.add(target)
            elif key == "Fn::Sub":
                text = value[0] if isinstance(value, list) else value
                for name in re.findall(r"\$\{([A-Za-z0-9]+)", text):
                    if name in names:
                        found.add(name)
            found |= references(value, names)
        if "DependsOn" in node:
            depends = node["DependsOn"]
            found |= set([depends] if isinstance(depends, str) else depends) & names
    elif isinstance(node, list):
        for value in node:
            found |= references(value, names)
    return found


def find_cycle(resources):
    names = set(resources)
    edges = {name: references(body, names) - {name} for name, body in resources.items()}
    state = {}

    def visit(name, path):
        state[name] = "open"
        for target in sorted(edges[name]):
            if state.get(target) == "open":
                return path + [name, target]
            if target not in state:
                cycle = visit(target, path + [name])
                if cycle:
                    return cycle
        state[name] = "done"
        return None

    for name in sorted(names):
        if name not in state:
            cycle = visit(name, [])
            if cycle:
                return cycle[cycle.index(cycle[-1]):]
    return None


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
    cycle = find_cycle(transformed.get("Resources", {}))
    if cycle:
        print("sam_transform: circular dependency: " + " -> ".join(cycle), file=sys.stderr)
        return 1
    with open(target, "w") as f:
        json.dump(transformed, f, indent=1, default=str)
    print(f"sam_transform: {len(transformed.get('Resources', {}))} resources after the transform -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
