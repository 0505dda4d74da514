"""Per-caller quotas on incoming conversation events, and a fair choice of what to prune
(sans-IO: the caller passes ``now``).

* :meth:`Admission.admit` charges a caller (its verified node id, or its IP address) for the
  events of one call, and for the conversations among them this node does not hold yet;
  past :class:`~synapse_p2p.Quotas` it raises ``RemoteError(overloaded)`` and nothing of the
  call is stored.
* Pruning past ``conversation_max_conversations``: when the conversation that went over the
  cap was started by a node that started more than half of the conversations held, that
  node's own quietest conversation goes; otherwise the quietest of all. A member flooding new
  conversations so evicts only its own.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

from .._quotas import Quotas, RateQuota
from ..errors import OVERLOADED, RemoteError
from ..types import ConversationEvent

__all__ = ["Admission"]


class Admission:
    """See the module documentation."""

    def __init__(self, quotas: Quotas) -> None:
        self.quotas = quotas
        self._events = RateQuota(quotas.events_per_second, quotas.event_burst)
        self._new = RateQuota(quotas.new_conversations_per_second, quotas.new_conversation_burst)
        self._creator: dict[str, str] = {}
        self._by_creator: dict[str, OrderedDict[str, None]] = {}
        self.refused_events = 0
        self.refused_conversations = 0

    def admit(
        self,
        key: str,
        events: Sequence[ConversationEvent],
        held: Callable[[str], bool],
        now: float,
    ) -> None:
        """Charge ``key`` for ``events`` (``held(cid)``: this node holds that conversation)."""
        if not events:
            return
        if not self._events.allow(key, now, len(events)):
            self.refused_events += len(events)
            raise RemoteError(
                OVERLOADED,
                f"too many conversation events from this caller (quota: "
                f"{self.quotas.events_per_second:g}/s, bursts of {self.quotas.event_burst})",
            )
        new = {e.conversation_id for e in events if not held(e.conversation_id)}
        if new and not self._new.allow(key, now, len(new)):
            self.refused_conversations += len(new)
            raise RemoteError(
                OVERLOADED,
                f"too many new conversations from this caller (quota: "
                f"{self.quotas.new_conversations_per_second:g}/s, bursts of "
                f"{self.quotas.new_conversation_burst})",
            )

    def touched(self, cid: str, author: str) -> None:
        """``cid`` had activity (its first event's author is its creator)."""
        creator = self._creator.get(cid)
        if creator is None:
            creator = self._creator[cid] = author
        started = self._by_creator.get(creator)
        if started is None:
            started = self._by_creator[creator] = OrderedDict()
        started[cid] = None
        started.move_to_end(cid)

    def forgot(self, cid: str) -> None:
        creator = self._creator.pop(cid, None)
        if creator is None:
            return
        started = self._by_creator.get(creator)
        if started is not None:
            started.pop(cid, None)
            if not started:
                del self._by_creator[creator]

    def victim(self, newest: str, active: OrderedDict[str, None], cap: int) -> str:
        """The conversation to prune now that ``newest`` took ``active`` past ``cap``."""
        creator = self._creator.get(newest)
        started = self._by_creator.get(creator) if creator is not None else None
        if started is not None and 2 * len(started) > cap:
            for cid in started:
                if cid != newest:
                    return cid
        return next(iter(active))
