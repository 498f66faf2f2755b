"""The one error hierarchy of the engine; ``web`` maps it to HTTP statuses in one place."""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error the engine reports to a user."""

    def __init__(self, message: str, **context: object) -> None:
        super().__init__(message)
        self.message = message
        self.context = {k: v for k, v in context.items() if v is not None}

    def __str__(self) -> str:
        return self.message


class ConfigError(EngineError):
    """The configuration (environment) is invalid."""


class NotFound(EngineError):
    """A named thing (process, instance, task, user) does not exist."""


class PermissionDenied(EngineError):
    """The actor may not do this."""


class Conflict(EngineError):
    """The state changed under the caller (e.g. the task was already completed)."""


class RateLimited(EngineError):
    """Too many attempts; try again later."""


class InvalidState(EngineError):
    """The operation does not apply to the object in its current state."""


class FormValidationError(EngineError):
    """Form data failed its JSON Schema; ``errors`` maps field paths to messages."""

    def __init__(self, message: str, errors: dict[str, list[str]], **context: object) -> None:
        super().__init__(message, **context)
        self.errors = errors


class DeploymentError(EngineError):
    """A deploy was refused; ``problems`` lists ``FILE:LINE: element ID: reason`` lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("deployment refused:\n" + "\n".join(problems))
        self.problems = problems


class ScriptError(EngineError):
    """Diagram code was refused by the sandbox or raised at run time."""
