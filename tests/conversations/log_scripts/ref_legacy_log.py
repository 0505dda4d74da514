"""Run by synapse-p2p 2.5.0's interpreter: write a 2.x SQLite conversation log.

argv[1]: the database path. Appends 10 events to "c1" and one to "c2", compacts e1..e5 of "c1"
into a summary at created_at 6.0 (the created_at of e5), and prints what the reference's own log then returns.
"""

import json
import sys

from synapse_p2p.conversations import SqliteConversationLog
from synapse_p2p.types import ConversationEvent, Peer

log = SqliteConversationLog(sys.argv[1])
peer = Peer(id="r" * 64, address="127.0.0.1", port=9999, name="ref")
for i in range(10):
    log.append(ConversationEvent("c1", f"e{i}", "message", peer, {"i": i}, None, i + 1.0))
log.append(ConversationEvent("c2", "x", "ack", peer, {"ok": True}, "e0", 3.5))
summary = ConversationEvent("c1", "s1", "summary", peer, {"summary": "digest"}, "e0", 6.0)
log.compact("c1", [f"e{i}" for i in range(1, 6)], summary)
out = {cid: [e.to_dict() for e in log.events(cid)] for cid in ("c1", "c2")}
log.close()
print(json.dumps(out))
