"""Per-app state: the settings, the estimate cache and the hub look-up (None when off)."""

from __future__ import annotations

from collections import OrderedDict

from fastapi import Request

from service.api.hub import HubLookup
from service.api.settings import Settings

# Bodies larger than this are not cached (a key should not cost more memory than its answer).
MAX_CACHED_KEY_BYTES = 16 * 1024


class ResponseCache:
    """An LRU of request body bytes -> response body bytes (successful estimates only)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[bytes, bytes] = OrderedDict()

    def get(self, key: bytes) -> bytes | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: bytes, value: bytes) -> None:
        if self.size <= 0 or len(key) > MAX_CACHED_KEY_BYTES:
            return
        self._data[key] = value
        if len(self._data) > self.size:
            self._data.popitem(last=False)

    def clear(self) -> None:
        self._data.clear()


class ApiState:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cache = ResponseCache(settings.cache_size)
        self.hub = HubLookup(settings) if settings.allow_hub_lookup else None


def get_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.tunecast
    return state
