#!/usr/bin/env python3
"""Validate OCSF JSON lines (`warden audit export --format ocsf`) against the OCSF schema.

Each line's JSON Schema is generated from the official OCSF schema export of the version the
event names in `metadata.version` (bundled with the `ocsf-json-schema` PyPI package, which
takes it from schema.ocsf.io), for the event's class and `metadata.profiles`, and checked
with the `jsonschema` package (draft 2020-12). Unknown attributes are errors.

Usage: ocsf-validate.py [FILE]   (reads stdin without FILE)
Exits 0 when every line is valid, 1 when some line is not (each error is printed with its line
and JSON path), 2 when the validator cannot run (missing packages, unreadable input).
Install: pip install ocsf-json-schema==1.2.0 jsonschema
"""

import json
import sys

try:
    import jsonschema
    from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema, get_packaged_versions
except ImportError as e:
    print(f"ocsf-validate: {e}; install with: pip install ocsf-json-schema==1.2.0 jsonschema",
          file=sys.stderr)
    sys.exit(2)


def main() -> int:
    try:
        stream = open(sys.argv[1], encoding="utf-8") if len(sys.argv) > 1 else sys.stdin
        lines = stream.read().splitlines()
    except OSError as e:
        print(f"ocsf-validate: cannot read the input: {e}", file=sys.stderr)
        return 2
    schemas, validators = {}, {}
    bad, checked = 0, 0
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        checked += 1
        try:
            event = json.loads(line)
            version = event["metadata"]["version"]
            class_uid = event["class_uid"]
            profiles = sorted(event["metadata"].get("profiles", []))
        except (ValueError, KeyError, TypeError) as e:
            print(f"line {n}: not an OCSF event (needs class_uid and metadata.version): {e}")
            bad += 1
            continue
        if version not in get_packaged_versions():
            print(f"line {n}: OCSF version {version!r} is not bundled with ocsf-json-schema")
            bad += 1
            continue
        key = (version, class_uid, tuple(profiles))
        if key not in validators:
            if version not in schemas:
                schemas[version] = OcsfJsonSchemaEmbedded(get_ocsf_schema(version=version))
            try:
                name = schemas[version].lookup_class_name_from_uid(class_uid)
                schema = schemas[version].get_class_schema(class_name=name, profiles=profiles)
            except Exception as e:  # the package raises plain exceptions for unknown classes
                print(f"line {n}: no OCSF {version} class {class_uid}: {e}")
                bad += 1
                continue
            validators[key] = jsonschema.Draft202012Validator(schema)
        errors = sorted(validators[key].iter_errors(event), key=lambda e: list(e.absolute_path))
        for err in errors:
            path = "/".join(str(p) for p in err.absolute_path) or "(top)"
            print(f"line {n} (class {class_uid}): {path}: {err.message}")
        bad += bool(errors)
    print(f"{checked - bad} of {checked} events valid OCSF", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
