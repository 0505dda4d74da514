"""The swarm as A2A sees it: skills, agent cards, and where a message goes.

A *skill* is a tag of a live member as :class:`~synapse_p2p.federation.SwarmAgentRegistry`
lists it: the capabilities the member advertises plus the ``tags`` and ``capabilities`` of its
``agent-card`` artifact. Team skills (given to the server) are skills too: a message for one
becomes a team task that exactly one worker with that capability runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill
from a2a.utils.constants import PROTOCOL_VERSION_CURRENT, TransportProtocol
from a2a.utils.errors import InvalidParamsError

from .. import __version__
from ..federation import AgentFederation, AgentMetadata, SwarmAgentRegistry

if TYPE_CHECKING:
    from ..node import Node
    from ..teams import Team

__all__ = ["SwarmRouter"]

TEAM_TAG = "team-task"


class SwarmRouter:
    """Skills, cards and routing for one node's swarm (used by the A2A server).

    ``ask`` routes with ``federation`` (by default one over ``registry``): by skill as a tag,
    or to one member when ``node_id`` is given. Team skills run on ``team``.
    """

    def __init__(
        self,
        node: Node,
        registry: SwarmAgentRegistry,
        *,
        federation: AgentFederation | None = None,
        team: Team | None = None,
        team_skills: frozenset[str] = frozenset(),
        name: str | None = None,
        description: str | None = None,
        signer: Callable[[AgentCard], AgentCard] | None = None,
    ) -> None:
        if team_skills and team is None:
            raise ValueError("team_skills need a team")
        self.node = node
        self.registry = registry
        self.federation = federation or AgentFederation(registry=registry)
        self._team = team
        self.team_skills = team_skills
        self.name = name or f"synapse swarm {node.swarm or 'default'}"
        self.description = description or (
            f"The members of the synapse-p2p swarm {node.swarm or 'default'!r}: a message is "
            "routed by skill (metadata 'skill') to a member with that capability."
        )
        self.signer = signer

    @property
    def team(self) -> Team:
        if self._team is None:
            raise RuntimeError("this server has no team skills")
        return self._team

    # -- skills -----------------------------------------------------------------------

    def agents(self) -> list[AgentMetadata]:
        return self.registry.list()

    def skills(self, node_id: str | None = None) -> dict[str, list[AgentMetadata]]:
        """Skill name -> the live members that have it (of ``node_id`` only, if given)."""
        found: dict[str, list[AgentMetadata]] = {}
        for agent in self.agents():
            if node_id is None or agent.id == node_id:
                for tag in agent.tags:
                    found.setdefault(tag, []).append(agent)
        return found

    def is_team_skill(self, skill: str | None) -> bool:
        return skill is not None and skill in self.team_skills

    def check(self, skill: str | None, node_id: str | None) -> None:
        """Raise A2A's ``InvalidParamsError`` for an unknown member or skill."""
        if node_id is not None and node_id not in self.node.peers:
            raise InvalidParamsError(message=f"no live member {node_id!r} in the swarm")
        if skill is None or (node_id is None and skill in self.team_skills):
            return
        known = self.skills(node_id)
        if skill not in known:
            names = sorted({*known, *(() if node_id else self.team_skills)})
            raise InvalidParamsError(
                message=f"unknown skill {skill!r}",
                data={"skill": skill, "known": names[:100]},
            )

    async def ask(self, text: str, skill: str | None, node_id: str | None, task_id: str) -> Any:
        """The reply of the member the federation picks (``node_id``: that member)."""
        context: dict[str, Any] = {"a2a_task": task_id}
        if skill is not None:
            context["skill"] = skill
        if node_id is not None:
            return await self.federation.run(text, agent_id=node_id, **context)
        return await self.federation.run(text, tags=[skill] if skill else None, **context)

    # -- cards ------------------------------------------------------------------------

    def _card(self, name: str, description: str, url: str, skills: list[AgentSkill]) -> AgentCard:
        card = AgentCard(
            name=name,
            description=description,
            version=__version__,
            supported_interfaces=[
                AgentInterface(
                    url=url,
                    protocol_binding=TransportProtocol.JSONRPC,
                    protocol_version=PROTOCOL_VERSION_CURRENT,
                )
            ],
            capabilities=AgentCapabilities(streaming=True, push_notifications=False),
            default_input_modes=["text/plain", "application/json"],
            default_output_modes=["text/plain", "application/json"],
            skills=skills,
        )
        return self.signer(card) if self.signer is not None else card

    def swarm_card(self, url: str) -> AgentCard:
        """The card of the swarm as one router agent, served at ``url``."""
        skills = []
        for skill, agents in sorted(self.skills().items()):
            if skill in self.team_skills:
                continue  # listed once, as a team task, below
            members = ", ".join(sorted(a.id[:12] for a in agents)[:8])
            skills.append(
                AgentSkill(
                    id=skill,
                    name=skill,
                    description=f"Asked of one of {len(agents)} member(s): {members}",
                    tags=[skill],
                )
            )
        for skill in sorted(self.team_skills):
            skills.append(
                AgentSkill(
                    id=skill,
                    name=skill,
                    description="A team task: exactly one worker with this capability runs it.",
                    tags=[skill, TEAM_TAG],
                )
            )
        return self._card(self.name, self.description, url, skills)

    def node_card(self, node_id: str, url: str) -> AgentCard | None:
        """The card of one live member, or ``None``."""
        peer = self.node.peers.get(node_id)
        if peer is None:
            return None
        skills = [
            AgentSkill(id=skill, name=skill, description=f"{skill} on {peer.name or node_id[:12]}",
                       tags=[skill])
            for skill in sorted(self.skills(node_id))
        ]  # fmt: skip
        name = peer.name or node_id[:12]
        description = f"Member {name} ({node_id}) of the synapse-p2p swarm {peer.swarm!r}."
        return self._card(name, description, url, skills)
