"""Service 133, uplink security: key rotation by command."""

from __future__ import annotations

from typing import Any

from flight.commanding import CommandContext, named_failure
from flight.router import CommandRouter
from flight.security.uplink_auth import KeyRotationError, UplinkAuthenticator
from telemetry_defs.model import Dictionary


class SecurityService:
    """TC[133,1] KEY_ROTATE; refused (AUTHENTICATION_IS_OFF) when the uplink is not secured."""

    def __init__(self, dictionary: Dictionary, auth: UplinkAuthenticator | None) -> None:
        self._d = dictionary
        self.auth = auth

    def register(self, router: CommandRouter) -> None:
        router.register_command(
            self._d.command("KEY_ROTATE"), self._rotate, check_start=self._check
        )

    def _check(self, args: Any) -> None:
        if self.auth is None:
            raise named_failure(
                self._d, "AUTHENTICATION_IS_OFF", "uplink authentication is off on this payload"
            )

    def _rotate(self, args: dict[str, Any], ctx: CommandContext) -> None:
        assert self.auth is not None
        try:
            self.auth.rotate(args["spi"], args["wrapped"])
        except KeyRotationError as exc:
            raise named_failure(self._d, exc.failure, str(exc)) from exc
