"""How one gateway runs: its model name, secret, limits and the crop loop's defaults (``awares serve``'s flags)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from awares_tool.episode import CropOptions
from awares_tool.images import ImageLimits

__all__ = ["GatewayConfig", "MiB"]

MiB = 1024 * 1024


class GatewayConfig(BaseModel):
    """Settings of one gateway; every field is an ``awares serve`` flag (see ``awares serve --help``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_name: str = Field("awares", min_length=1, description="The model id clients see in /v1/models and "
                                                                "responses; requests may name any model.")
    token: str | None = Field(None, repr=False, description="Bearer token every request but /healthz must carry.")
    concurrency: int = Field(1, ge=1, description="Crop loops in flight at once.")
    queue: int = Field(64, ge=0, description="Requests allowed to wait for a loop slot; beyond: 429.")
    max_body_bytes: int = Field(32 * MiB, ge=1024, description="Largest request body; beyond: 413.")
    max_tokens_limit: int = Field(4096, ge=1, description="Largest max_tokens accepted per model call.")
    image_limits: ImageLimits = Field(default_factory=ImageLimits,
                                      description="Pixel, byte and URL limits for request images.")
    crop: CropOptions = Field(default_factory=CropOptions, description="The loop's defaults (mode, crop set...).")
    allowed_origins: tuple[str, ...] = Field((), description="Origins a browser page may call from.")
    keepalive_s: float = Field(10.0, gt=0, description="A streamed response sends an SSE comment this often while "
                                                       "the loop runs, so proxies keep the connection open.")
