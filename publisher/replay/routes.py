"""The admin routes of a daemon's replays, across the orgs it serves.

``POST /replays`` names the org in its body (``"org"``; it may be left out when the daemon serves
one org) and goes to that org's :class:`~publisher.replay.manager.ReplayManager`; ``GET /replays``
lists every org's; ``GET`` and ``DELETE /replays/<id>`` find the replay in whichever org has it.
The routes are looked up at each request, so they serve the orgs of the slots open right now.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from publisher.clock import Clock, utcnow
from publisher.errors import PublisherError, UsageError
from publisher.replay.manager import ReplayManager, Route
from publisher.replay.request import ReplayRequest, cancel_request


class ReplayRoutes:
    def __init__(
        self,
        managers: Callable[[], Mapping[str, ReplayManager]],
        *,
        deployment: str,
        catalogue: Sequence[str] = (),
        hand_over: Callable[[str, dict[str, Any]], None] | None = None,
        find: Callable[[str], dict[str, Any] | None] | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self._managers = managers
        self._deployment = deployment
        self._catalogue = tuple(catalogue)
        self._hand_over = hand_over
        self._find = find
        self._clock = clock

    def routes(self) -> list[tuple[str, str, Route, bool]]:
        """(method, path, route, prefix) for :meth:`publisher.http_api.HttpApi.add_route`."""
        return [
            ("POST", "/replays", self._post, False),
            ("GET", "/replays", self._list, False),
            ("GET", "/replays/", self._get_one, True),
            ("DELETE", "/replays/", self._delete, True),
        ]

    def identity(self) -> dict[str, Any]:
        orgs = sorted(self._managers())
        out: dict[str, Any] = {"deployment_id": self._deployment, "orgs": orgs}
        if len(orgs) == 1:
            out["org_id"] = orgs[0]
        return out

    def _post(self, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        managers = self._managers()
        try:
            data = orjson.loads(body or b"{}")
        except orjson.JSONDecodeError:
            return 400, {"error": "the body is not JSON"}
        org = data.get("org") if isinstance(data, dict) else None
        if org is None and len(self._catalogue) == 1:
            org = self._catalogue[0]
        if org is None and len(managers) == 1:
            (manager,) = managers.values()
            return manager._post(path, body)
        if isinstance(org, str) and org in self._catalogue and org not in managers:
            if self._hand_over is None:
                return 503, {"error": f"the daemon is starting: org {org!r} is not open yet; retry"}
            return self._handed_over(org, data)
        if not isinstance(org, str) or org not in managers:
            known = ", ".join(sorted(managers)) or "none yet"
            what = 'name the org ("org")' if org is None else f"unknown org {org!r}"
            return 400, {"error": f"{what}; this daemon serves: {known}"}
        return managers[org]._post(path, body)

    def _handed_over(self, org: str, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """The org's slot is another replica's: the request travels there through Kafka, a
        record in the slot's state partition that its owner picks up."""
        if self._hand_over is None:
            raise RuntimeError("no hand-over")
        try:
            request = ReplayRequest.from_json(data, now=self._clock())
        except UsageError as exc:
            return 400, {"error": exc.message}
        body = request.to_json() | {"org": org}
        try:
            self._hand_over(org, body)
        except PublisherError as exc:
            return 503, {"error": f"could not hand the replay over: {exc}"}
        return 202, {"id": request.replay_id, "org": org, "status": "handed over", "request": body}

    def _list(self, _path: str, _body: bytes) -> tuple[int, dict[str, Any]]:
        replays = [
            status
            for _org, manager in sorted(self._managers().items())
            for status in manager.statuses()
        ]
        return 200, {**self.identity(), "replays": replays}

    def _get_one(self, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        replay_id = path.removeprefix("/replays/")
        managers = self._managers()
        for manager in managers.values():
            if manager.knows(replay_id):
                return manager._get_one(path, body)
        if self._find is not None:
            # Another replica's, or one that ended: its progress is in the state topic.
            try:
                found = self._find(replay_id)
            except PublisherError as exc:
                return 503, {"error": str(exc)}
            if found is not None:
                return 200, found
            return 404, {"error": f"no replay {replay_id!r}"}
        if len(managers) == 1:
            (manager,) = managers.values()
            return manager._get_one(path, body)
        return 404, {"error": f"no replay {replay_id!r} in this daemon's orgs"}

    def _delete(self, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        replay_id = path.removeprefix("/replays/")
        managers = self._managers()
        for manager in managers.values():
            if manager.running(replay_id):
                return manager._delete(path, body)
        if self._find is None or self._hand_over is None:
            return 404, {"error": f"replay {replay_id!r} is not running in this daemon"}
        # Another replica's: the cancel travels to its owner as the request hand-overs do.
        try:
            found = self._find(replay_id)
        except PublisherError as exc:
            return 503, {"error": str(exc)}
        org = _org_of(found)
        if found is None or org is None or org not in self._catalogue:
            return 404, {"error": f"no replay {replay_id!r}"}
        if found.get("status") not in {"running", "pending"}:
            return 409, {"error": f"replay {replay_id!r} has ended", "replay": found}
        try:
            self._hand_over(org, cancel_request(replay_id, org))
        except PublisherError as exc:
            return 503, {"error": f"could not hand the cancel over: {exc}"}
        return 202, {"id": replay_id, "org": org, "status": "cancel handed over"}


def _org_of(found: dict[str, Any] | None) -> str | None:
    if found is None:
        return None
    org = found.get("org")
    if org is None and isinstance(found.get("request"), dict):
        org = found["request"].get("org")
    return org if isinstance(org, str) else None
