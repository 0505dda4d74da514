"""The synapse-p2p 2.5.0 Client calling a node given on the command line; prints JSON."""

import asyncio
import base64
import json
import sys

from synapse_p2p import Client


def jsonable(value):
    if isinstance(value, bytes):
        return {"__bytes__": base64.b64encode(value).decode()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


async def main() -> None:
    port = int(sys.argv[1])
    calls = json.loads(sys.stdin.read())
    out = []
    for endpoint, args, kwargs in calls:
        args = [
            base64.b64decode(a["__bytes__"]) if isinstance(a, dict) and "__bytes__" in a else a
            for a in args
        ]
        try:
            result = await Client("127.0.0.1", port, timeout=10).call(endpoint, *args, **kwargs)
            out.append({"ok": True, "result": jsonable(result)})
        except Exception as exc:  # the reference raises RuntimeError for remote errors
            out.append({"ok": False, "type": type(exc).__name__, "message": str(exc)})
    peers = await Client("127.0.0.1", port).peers()
    out.append({"peers": [p.to_dict() for p in peers]})
    print(json.dumps(out))


asyncio.run(main())
