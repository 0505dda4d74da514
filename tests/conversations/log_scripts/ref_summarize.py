"""Run by synapse-p2p 2.5.0's interpreter: its default summarizer over MsgPack-encoded cases.

stdin: MsgPack list of cases, each a list of event dicts. stdout: MsgPack list of summaries.
"""

import asyncio
import sys

import msgpack

from synapse_p2p.conversations import default_summarizer
from synapse_p2p.types import ConversationEvent

cases = msgpack.unpackb(sys.stdin.buffer.read(), raw=False, strict_map_key=False)


async def main():
    return [
        await default_summarizer([ConversationEvent.from_dict(e) for e in case]) for case in cases
    ]


sys.stdout.buffer.write(msgpack.packb(asyncio.run(main()), use_bin_type=True))
