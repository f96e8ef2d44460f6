"""YAML helpers for tests/contract.rs, run with the tools venv's python
(scripts/contract-tools.sh; PyYAML comes with schemathesis):

    yamltool.py json FILE                 FILE as JSON on stdout
    yamltool.py helm-values DEFAULTS USER  the values Helm would render with
                                           (`helm install -f USER`), as JSON

Helm merges user values into the chart's defaults key by key: maps merge
recursively, anything else (lists included) replaces, and a null removes
the key. The chart's values.schema.json is checked against that result.
"""

import json
import sys

import yaml


def load(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def merge(base, over):
    if not isinstance(base, dict) or not isinstance(over, dict):
        return over
    out = dict(base)
    for key, value in over.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def main(argv):
    if len(argv) == 3 and argv[1] == "json":
        doc = load(argv[2])
    elif len(argv) == 4 and argv[1] == "helm-values":
        doc = merge(load(argv[2]) or {}, load(argv[3]) or {})
    else:
        sys.exit(__doc__)
    json.dump(doc, sys.stdout, indent=1, sort_keys=True, default=str)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv)
