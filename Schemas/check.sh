#!/usr/bin/env bash
# Checks the schemas in this folder. Exits non-zero on the first failure.
#   1. protoc compiles mcp.proto (descriptor set, C++ and Python generation).
#   2. envelope.schema.json is a valid draft 2020-12 schema; every examples/valid/*.json passes
#      it and every examples/invalid/*.json is refused (the first reason is printed).
#   3. If Python's msgpack is installed: the msgpack example of envelope-msgpack.md decodes,
#      re-packs to the same bytes, and says the same as examples/valid/ping.json.
# Needs: protoc (3.15 or newer, for proto3 `optional`), python3 with jsonschema.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== protoc $(protoc --version)"
protoc --proto_path="$here" --descriptor_set_out="$work/mcp.pb" --include_imports "$here/mcp.proto"
protoc --proto_path="$here" --cpp_out="$work" --python_out="$work" "$here/mcp.proto"
echo "mcp.proto: compiles (descriptor set, C++, Python)"

echo "== JSON Schema"
python3 - "$here" <<'PY'
import json, pathlib, sys
import jsonschema

here = pathlib.Path(sys.argv[1])
schema = json.loads((here / "envelope.schema.json").read_text())
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema)

failures = 0
valid = sorted((here / "examples" / "valid").glob("*.json"))
invalid = sorted((here / "examples" / "invalid").glob("*.json"))
if not valid or not invalid:
    sys.exit("no examples found")
for path in valid:
    errors = sorted(validator.iter_errors(json.loads(path.read_text())), key=lambda e: list(e.absolute_path))
    if errors:
        failures += 1
        first = errors[0]
        print(f"FAIL {path.name}: should pass, refused at /{'/'.join(map(str, first.absolute_path))}: {first.message}")
    else:
        print(f"ok   valid/{path.name}")
for path in invalid:
    errors = sorted(validator.iter_errors(json.loads(path.read_text())), key=lambda e: list(e.absolute_path))
    if errors:
        first = jsonschema.exceptions.best_match(errors)
        where = "/" + "/".join(map(str, first.absolute_path))
        print(f"ok   invalid/{path.name}: refused at {where}: {first.message[:110]}")
    else:
        failures += 1
        print(f"FAIL {path.name}: should be refused, passed")
if failures:
    sys.exit(f"{failures} JSON example(s) failed")
print(f"envelope.schema.json: {len(valid)} valid and {len(invalid)} invalid examples behave")
PY

echo "== msgpack example"
if python3 -c "import msgpack" 2>/dev/null; then
python3 - "$here" <<'PY'
import datetime, json, pathlib, sys, uuid
import msgpack

here = pathlib.Path(sys.argv[1])
examples = here / "examples"
record = bytes.fromhex((examples / "msgpack" / "ping-record.hex").read_text())
standalone = bytes.fromhex((examples / "msgpack" / "ping-envelope.hex").read_text())

m = msgpack.unpackb(record)
assert msgpack.packb(m) == record, "record does not re-pack to the same bytes"
header = list(m)[:6]
assert header == ["v", "seq", "prev_hash", "actor_prev_seq", "clock_ms", "entropy"], header
assert m["v"] == 1 and m["seq"] == 1 and m["prev_hash"] == bytes(32) and m["actor_prev_seq"] == 0
envelope = dict(list(m.items())[6:])
assert msgpack.packb(envelope) == standalone, "record's envelope pairs differ from the standalone envelope"

# The same envelope in its JSON form must be examples/valid/ping.json.
IDS = {"id", "parent_id", "correlation_id", "stream_id"}
def to_json(key, value):
    if isinstance(value, dict):
        return {k: to_json(k, v) for k, v in value.items()}
    if isinstance(value, bytes):
        return str(uuid.UUID(bytes=value)) if key in IDS else value.hex()
    return value
rendered = {}
for key, value in envelope.items():
    if key == "timestamp":
        instant = datetime.datetime.fromtimestamp(value / 1000, tz=datetime.timezone.utc)
        rendered["timestamp"] = instant.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value % 1000:03d}Z"
        rendered["timestamp_ms"] = value
    else:
        rendered[key] = to_json(key, value)
expected = json.loads((examples / "valid" / "ping.json").read_text())
assert rendered == expected and list(rendered) == list(expected), f"{rendered} != {expected}"
print("msgpack example: decodes, re-packs byte for byte, matches valid/ping.json")
PY
else
    echo "msgpack example: skipped (python3 -m pip install msgpack to check it)"
fi
echo "== all checks passed"
