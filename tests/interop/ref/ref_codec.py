"""Frames through the synapse-p2p 2.5.0 codec.

stdin: {"decode": [hex frames], "encode": [["request"|"response", fields]]}
stdout: {"decoded": [...], "encoded": [hex frames]}
"""

import base64
import json
import sys

from synapse_p2p.framing import encode_frame
from synapse_p2p.messages import RPCError, RPCRequest, RPCResponse
from synapse_p2p.serializers import MessagePackRPCSerializer


def jsonable(value):
    if isinstance(value, bytes):
        return {"__bytes__": base64.b64encode(value).decode()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


def unjson(value):
    if isinstance(value, dict):
        if set(value) == {"__bytes__"}:
            return base64.b64decode(value["__bytes__"])
        return {k: unjson(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unjson(v) for v in value]
    return value


job = json.loads(sys.stdin.read())
decoded = []
for hex_frame in job["decode"]:
    data = bytes.fromhex(hex_frame)
    size = int.from_bytes(data[:4], "big")
    assert size == len(data) - 4
    msg = MessagePackRPCSerializer.deserialize(data[4:])
    fields = {f: getattr(msg, f) for f in msg.__slots__}
    if fields.get("error") is not None:
        fields["error"] = {"code": fields["error"].code, "message": fields["error"].message}
    decoded.append(jsonable(fields))
encoded = []
for kind, fields in job["encode"]:
    fields = unjson(fields)
    if kind == "request":
        msg = RPCRequest(**fields)
    else:
        if fields.get("error") is not None:
            fields["error"] = RPCError(**fields["error"])
        msg = RPCResponse(**fields)
    encoded.append(encode_frame(MessagePackRPCSerializer.serialize(msg)).hex())
print(json.dumps({"decoded": decoded, "encoded": encoded}))
