"""The energy community: who takes part, their connections and metering points, and their contracts."""

from kwartier.community.definition import (
    CommunitySpec,
    Connection,
    Contract,
    Definition,
    DefinitionError,
    MeteringPoint,
    NotInDefinition,
    Participant,
    Party,
    PlanText,
    load_definition,
)

__all__ = [
    "CommunitySpec",
    "Connection",
    "Contract",
    "Definition",
    "DefinitionError",
    "MeteringPoint",
    "NotInDefinition",
    "Participant",
    "Party",
    "PlanText",
    "load_definition",
]
