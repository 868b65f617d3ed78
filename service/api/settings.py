"""The service's one settings object, read from ``TUNECAST_*`` environment variables (or a ``.env``).

TUNECAST_HOST=127.0.0.1          bind address of ``estimate serve``
TUNECAST_PORT=8000               port of ``estimate serve``
TUNECAST_WORKERS=1               uvicorn worker processes
TUNECAST_MAX_REQUEST_BYTES=262144  larger bodies get 413 before anything is parsed
TUNECAST_BATCH_LIMIT=64          most specs in one POST /v1/estimates/batch
TUNECAST_API_KEY=...             when set, every /v1 request needs X-API-Key or Authorization: Bearer
TUNECAST_CORS_ORIGINS='["https://budget.example.com"]'   browsers allowed to call the API
TUNECAST_ALLOW_HUB_LOOKUP=false  unknown model ids may fetch config.json (only) from the HF hub
TUNECAST_HUB_URL=https://huggingface.co
TUNECAST_HUB_TOKEN=...           for gated repos (sent to the hub only)
TUNECAST_CACHE_SIZE=2048         estimates kept per worker, keyed by the request's JSON text
"""

from __future__ import annotations

from functools import cache

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the service can be told; defaults are safe for a loopback deployment."""

    model_config = SettingsConfigDict(env_prefix="TUNECAST_", env_file=".env", extra="ignore")

    host: str = Field("127.0.0.1", description="Bind address (estimate serve).")
    port: int = Field(8000, ge=0, le=65535, description="Port (estimate serve).")
    workers: int = Field(1, ge=1, le=256, description="uvicorn worker processes.")
    max_request_bytes: int = Field(256 * 1024, ge=1024, description="Body size limit; larger gets 413.")
    batch_limit: int = Field(64, ge=1, le=10_000, description="Most specs per batch request.")
    api_key: SecretStr | None = Field(None, description="When set, /v1 needs X-API-Key or a Bearer token.")
    cors_origins: list[str] = Field(default_factory=list, description="Origins allowed by CORS.")
    allow_hub_lookup: bool = Field(False, description="Fetch config.json of unknown ids from the HF hub.")
    hub_url: str = Field("https://huggingface.co", description="Hub base URL (must be https).")
    hub_token: SecretStr | None = Field(None, description="Token for gated hub repos.")
    hub_timeout_s: float = Field(10.0, gt=0, le=120)
    cache_size: int = Field(2048, ge=0, le=1_000_000, description="Cached estimates per worker (0: off).")

    @field_validator("hub_url")
    @classmethod
    def _https_only(cls, v: str) -> str:
        if not v.startswith("https://"):
            raise ValueError("the hub URL must use https")
        return v.rstrip("/")

    @field_validator("api_key", "hub_token")
    @classmethod
    def _empty_is_none(cls, v: SecretStr | None) -> SecretStr | None:
        return None if v is None or not v.get_secret_value() else v


@cache
def get_settings() -> Settings:
    """The process's settings (read once; ``create_app(settings)`` takes explicit ones in tests)."""
    return Settings()
