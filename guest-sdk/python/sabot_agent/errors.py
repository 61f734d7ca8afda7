"""The error an agent reports instead of trapping (``agent-error`` in ``wit/types.wit``)."""

from typing import Optional


class AgentError(Exception):
    """An ordinary error: the host applies the pipeline's bad-batch policy (or refuses to start).

    ``kind`` is ``"invalid-input"``, ``"invalid-config"`` or ``"internal"``.
    """

    def __init__(self, kind: str, message: str, row: Optional[int] = None):
        if kind not in ("invalid-input", "invalid-config", "internal"):
            raise ValueError(f"an error kind is invalid-input, invalid-config or internal; got {kind!r}")
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.row = row

    @classmethod
    def invalid_input(cls, message: str, row: Optional[int] = None) -> "AgentError":
        """The batch, or a row of it, is not what the agent accepts."""
        return cls("invalid-input", message, row)

    @classmethod
    def invalid_config(cls, message: str) -> "AgentError":
        """The agent's configuration is not valid: the pipeline cannot start."""
        return cls("invalid-config", message)

    @classmethod
    def internal(cls, message: str) -> "AgentError":
        """A bug in the agent."""
        return cls("internal", message)
