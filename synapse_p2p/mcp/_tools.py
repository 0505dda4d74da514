"""The tools: names, descriptions, JSON schemas, and how a call reaches the bridge."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ._bridge import SwarmBridge, ToolError

__all__ = ["TOOLS", "ToolSpec"]

Handler = Callable[[SwarmBridge, dict[str, Any]], Awaitable[dict[str, Any]]]

#: Longest wait any tool accepts (MCP clients often give up on a call after a minute or two).
MAX_WAIT = 600


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    title: str
    description: str
    schema: dict[str, Any]
    handler: Handler
    read_only: bool = False


def _obj(required: list[str], **props: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }


def _str(description: str, *, max_length: int = 4096, min_length: int = 1) -> dict[str, Any]:
    return {
        "type": "string",
        "description": description,
        "minLength": min_length,
        "maxLength": max_length,
    }


def _timeout(default: float, description: str = "Seconds to wait at most.") -> dict[str, Any]:
    return {
        "type": "number",
        "exclusiveMinimum": 0,
        "maximum": MAX_WAIT,
        "default": default,
        "description": description,
    }


def _wait(default: float, what: str) -> dict[str, Any]:
    return {
        "type": "number",
        "minimum": 0,
        "maximum": MAX_WAIT,
        "default": default,
        "description": f"Seconds to wait for {what} (0: only look).",
    }


def _limit(default: int, maximum: int, what: str) -> dict[str, Any]:
    return {
        "type": "integer",
        "minimum": 1,
        "maximum": maximum,
        "default": default,
        "description": f"At most this many {what}.",
    }


_PEER = _str(
    "The peer: its id (or a unique prefix of 6+ characters), its name, or host:port, "
    "as list_peers shows.",
    max_length=300,
)
_CONTEXT = {
    "type": "object",
    "description": "Extra context for the task (any JSON object), such as a URL or file names.",
    "default": {},
}
_ANY = {"description": "Any JSON value."}


async def _list_peers(b: SwarmBridge, a: dict[str, Any]) -> dict[str, Any]:
    return await b.list_peers(a.get("capability"), a.get("agent_cards", True), a.get("limit", 50))


async def _describe_peer(b: SwarmBridge, a: dict[str, Any]) -> dict[str, Any]:
    return await b.describe_peer(a["peer"], a.get("timeout", 10))


async def _ask_swarm(b: SwarmBridge, a: dict[str, Any]) -> dict[str, Any]:
    return await b.ask_swarm(
        a["task"], a.get("context", {}), a.get("timeout", 30), a.get("max_replies")
    )


async def _ask_peer(b: SwarmBridge, a: dict[str, Any]) -> dict[str, Any]:
    return await b.ask_peer(a["peer"], a["task"], a.get("context", {}), a.get("timeout", 60))


async def _call_endpoint(b: SwarmBridge, a: dict[str, Any]) -> dict[str, Any]:
    return await b.call_endpoint(
        a["peer"], a["endpoint"], a.get("args", []), a.get("kwargs", {}), a.get("timeout", 30)
    )


async def _offer_task(b: SwarmBridge, a: dict[str, Any]) -> dict[str, Any]:
    return await b.offer_task(a["title"], a.get("spec", {}), a.get("requires", []))


async def _task_status(b: SwarmBridge, a: dict[str, Any]) -> dict[str, Any]:
    return b.task_status(a.get("task_id"), a.get("limit", 20))


async def _wait_task(b: SwarmBridge, a: dict[str, Any]) -> dict[str, Any]:
    return await b.wait_task(a["task_id"], a.get("timeout", 60))


async def _list_conversations(b: SwarmBridge, a: dict[str, Any]) -> dict[str, Any]:
    return b.list_conversations(a.get("limit", 20))


async def _read_conversation(b: SwarmBridge, a: dict[str, Any]) -> dict[str, Any]:
    return b.read_conversation(
        a["conversation_id"], a.get("since", 0.0), a.get("after"), a.get("limit", 50)
    )


async def _post_event(b: SwarmBridge, a: dict[str, Any]) -> dict[str, Any]:
    return await b.post_event(
        a["conversation_id"],
        a.get("kind", "note"),
        a.get("text"),
        a.get("payload", {}),
        a.get("parent_id"),
    )


async def _next_ask(b: SwarmBridge, a: dict[str, Any]) -> dict[str, Any]:
    return await b.next_ask(a.get("timeout", 30))


async def _reply(b: SwarmBridge, a: dict[str, Any]) -> dict[str, Any]:
    if ("result" in a) == ("error" in a):
        raise ToolError("give exactly one of 'result' (the answer) and 'error' (why not)")
    return await b.reply(a["ask_id"], a.get("result"), a.get("error"))


async def _next_task(b: SwarmBridge, a: dict[str, Any]) -> dict[str, Any]:
    return await b.next_task(a.get("timeout", 30))


async def _progress(b: SwarmBridge, a: dict[str, Any]) -> dict[str, Any]:
    return await b.progress(a["task_id"], a["message"], a.get("data", {}))


async def _done(b: SwarmBridge, a: dict[str, Any]) -> dict[str, Any]:
    return b.finish(a["task_id"], a.get("result"), None)


async def _fail(b: SwarmBridge, a: dict[str, Any]) -> dict[str, Any]:
    return b.finish(a["task_id"], None, a["error"])


_REPLY_SCHEMA = _obj(
    ["ask_id"],
    ask_id=_str("The ask_id next_ask gave.", max_length=64),
    result={**_ANY, "description": "The answer (text or any JSON value). Give this or error."},
    error=_str("Instead of a result: why the ask could not be done.", max_length=8192),
)

TOOLS: list[ToolSpec] = [
    ToolSpec(
        "list_peers",
        "List the swarm's peers",
        "List the nodes of the swarm this server's node has joined: id, name, address, "
        "capabilities and (unless agent_cards is false) each peer's published agent card, which "
        "says what the agent behind it does. Also shows this node itself under 'self'. Use it "
        "first to see who can help, then ask_swarm, ask_peer or call_endpoint.",
        _obj(
            [],
            capability=_str("Only peers with this capability.", max_length=256),
            agent_cards={
                "type": "boolean",
                "default": True,
                "description": "Fetch each peer's agent card (a little slower).",
            },
            limit=_limit(50, 200, "peers"),
        ),
        _list_peers,
        read_only=True,
    ),
    ToolSpec(
        "describe_peer",
        "Describe one peer",
        "Ask one peer about itself: its role and description, its capabilities with their "
        "input schemas, the RPC endpoints it publishes (callable with call_endpoint) and its "
        "agent card.",
        _obj(["peer"], peer=_PEER, timeout=_timeout(10)),
        _describe_peer,
        read_only=True,
    ),
    ToolSpec(
        "ask_swarm",
        "Ask the whole swarm",
        "Broadcast a task to every peer (the swarm's 'ask'). Each peer with an ask handler "
        "decides for itself whether to help: it ACKs, then replies when done. Waits until every "
        "peer that ACKed has replied (or failed), or until timeout, and returns who ACKed, the "
        "replies, the errors and who is still working. The ask is a conversation: its "
        "conversation_id can be read later with read_conversation, where late replies appear.",
        _obj(
            ["task"],
            task=_str("What to do, in plain words.", max_length=65536),
            context=_CONTEXT,
            timeout=_timeout(30, "Seconds to wait for ACKs and replies at most."),
            max_replies={
                "type": "integer",
                "minimum": 1,
                "maximum": 1000,
                "description": "Return as soon as this many replies came.",
            },
        ),
        _ask_swarm,
    ),
    ToolSpec(
        "ask_peer",
        "Ask one peer",
        "Hand a task to one peer's ask handler directly and wait for its answer (no broadcast, "
        "no conversation). Fails if the peer has no ask handler, is gone, or does not answer "
        "within timeout.",
        _obj(
            ["peer", "task"],
            peer=_PEER,
            task=_str("What to do, in plain words.", max_length=65536),
            context=_CONTEXT,
            timeout=_timeout(60),
        ),
        _ask_peer,
    ),
    ToolSpec(
        "call_endpoint",
        "Call a peer's endpoint",
        "Call a named RPC endpoint on one peer (see describe_peer for the endpoints it "
        "publishes) with positional args and keyword kwargs, and return its result. The "
        "swarm protocol's own endpoints (_synapse.*) are reachable only where they just read.",
        _obj(
            ["peer", "endpoint"],
            peer=_PEER,
            endpoint=_str("The endpoint's name, e.g. 'sum'.", max_length=256),
            args={"type": "array", "default": [], "description": "Positional arguments."},
            kwargs={"type": "object", "default": {}, "description": "Keyword arguments."},
            timeout=_timeout(30),
        ),
        _call_endpoint,
    ),
    ToolSpec(
        "offer_task",
        "Offer a team task",
        "Offer a unit of work to the team: workers whose capabilities include every name in "
        "'requires' race to claim it and exactly one is granted it. Returns the task_id; "
        "follow it with task_status or wait_task. If a worker goes silent, the task is "
        "re-offered.",
        _obj(
            ["title"],
            title=_str("A short description of the work.", max_length=4096),
            spec={
                "type": "object",
                "default": {},
                "description": "The details the worker needs (any JSON object).",
            },
            requires={
                "type": "array",
                "default": [],
                "maxItems": 32,
                "items": {"type": "string", "minLength": 1, "maxLength": 256},
                "description": "Capability names a worker must have.",
            },
        ),
        _offer_task,
    ),
    ToolSpec(
        "task_status",
        "Check team tasks",
        "The state of a task this server offered (offered, claimed, done or failed; assignee, "
        "attempts, recent progress, result or error). Without task_id, lists the tasks, most "
        "recently active first.",
        _obj(
            [],
            task_id=_str("The id offer_task gave.", max_length=64),
            limit=_limit(20, 200, "tasks"),
        ),
        _task_status,
        read_only=True,
    ),
    ToolSpec(
        "wait_task",
        "Wait for a team task",
        "Wait until a task this server offered is done or failed and return it with its result "
        "or error. Fails if it is still running after timeout (the task goes on; wait again).",
        _obj(
            ["task_id"],
            task_id=_str("The id offer_task gave.", max_length=64),
            timeout=_timeout(60),
        ),
        _wait_task,
        read_only=True,
    ),
    ToolSpec(
        "list_conversations",
        "List conversations",
        "The conversations this node knows (every ask and every team task is one), most "
        "recently active first, with their size and opening event.",
        _obj([], limit=_limit(20, 200, "conversations")),
        _list_conversations,
        read_only=True,
    ),
    ToolSpec(
        "read_conversation",
        "Read a conversation",
        "Read a conversation's events in order (messages, ACKs, replies, errors, task events, "
        "notes), a page at a time: pass 'next_after' from the previous page as 'after' to go "
        "on, or 'since' (epoch seconds) to read only newer events.",
        _obj(
            ["conversation_id"],
            conversation_id=_str(
                "The conversation's id (an ask's or a task's id).", max_length=256
            ),
            since={
                "type": "number",
                "minimum": 0,
                "default": 0,
                "description": "Only events created after this time (epoch seconds).",
            },
            after=_str("Paging cursor: the 'next_after' of the previous page.", max_length=256),
            limit=_limit(50, 200, "events"),
        ),
        _read_conversation,
        read_only=True,
    ),
    ToolSpec(
        "post_event",
        "Post to a conversation",
        "Add an event of your own kind (default 'note') to a conversation; every peer gets it "
        "(a new conversation_id starts a new conversation). To answer an ask use reply; to "
        "report on a team task use progress, done or fail.",
        _obj(
            ["conversation_id"],
            conversation_id=_str("The conversation's id.", max_length=256),
            kind=_str("The event's kind, e.g. 'note' or 'review.comment'.", max_length=128),
            text=_str("Text to post (stored as payload.text).", max_length=65536, min_length=0),
            payload={"type": "object", "default": {}, "description": "More data (JSON)."},
            parent_id=_str("The event this one answers, if any.", max_length=256),
        ),
        _post_event,
    ),
    ToolSpec(
        "next_ask",
        "Take the next ask for this node",
        "Take the next task another node asked this one to do, waiting up to timeout for one. "
        "Taking a swarm ask ACKs it: the asker then expects your reply, so answer every ask "
        "you take with the reply tool (a result, or an error if you cannot do it). Returns "
        "ask: null when none came.",
        _obj([], timeout=_wait(30, "an ask")),
        _next_ask,
    ),
    ToolSpec(
        "reply",
        "Answer an ask",
        "Answer an ask taken with next_ask: give 'result' (text or JSON) or 'error' (why it "
        "could not be done). The swarm sees it in the ask's conversation.",
        _REPLY_SCHEMA,
        _reply,
    ),
    ToolSpec(
        "next_task",
        "Take the next team task",
        "Take the next team task granted to this node, waiting up to timeout. The first call "
        "starts claiming the offers this node's capabilities cover. A granted task waits only "
        "a limited time to be taken, and a taken task must get progress, done or fail "
        "reports; otherwise it is handed back to the team. Returns task: null when none came.",
        _obj([], timeout=_wait(30, "a task")),
        _next_task,
    ),
    ToolSpec(
        "progress",
        "Report progress on a team task",
        "Tell the team how a task taken with next_task is going (it also keeps the task "
        "assigned to this node).",
        _obj(
            ["task_id", "message"],
            task_id=_str("The task's id.", max_length=64),
            message=_str("What is happening.", max_length=8192),
            data={"type": "object", "default": {}, "description": "More data (JSON)."},
        ),
        _progress,
    ),
    ToolSpec(
        "done",
        "Finish a team task",
        "Finish a task taken with next_task and send its result to the team.",
        _obj(
            ["task_id", "result"],
            task_id=_str("The task's id.", max_length=64),
            result={**_ANY, "description": "The task's result (text or any JSON value)."},
        ),
        _done,
    ),
    ToolSpec(
        "fail",
        "Give up a team task",
        "Report that a task taken with next_task failed (the team does not retry it).",
        _obj(
            ["task_id", "error"],
            task_id=_str("The task's id.", max_length=64),
            error=_str("Why it failed.", max_length=8192),
        ),
        _fail,
    ),
]
