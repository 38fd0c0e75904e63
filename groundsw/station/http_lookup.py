"""What every route of the station's API does first: find the payload's link, or answer 404."""

from __future__ import annotations

from fastapi import HTTPException

from groundsw.station.owned_link import OwnedLink
from groundsw.station.station import Station


def link_or_404(station: Station, name: str) -> OwnedLink:
    """The link of payload `name`; HTTP 404 with one sentence when the station has none."""
    try:
        return station.link(name)
    except KeyError:
        raise HTTPException(404, f"no payload named {name!r}") from None
