"""The one interface every model backend implements.

The crop loop (:mod:`awares_tool.episode.loop`) talks to models only through :class:`VLMBackend`: a chat call with
interleaved text and images, generation settings, and token usage back. Backends know nothing about crops
(they just see images in messages); the loop knows nothing about a backend's internals (it only passes back
the opaque ``state`` a backend returned, so a backend can reuse its KV cache for the next turn).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, Sequence, runtime_checkable

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from ..errors import BackendUnavailableError

__all__ = [
    "TextPart",
    "ImagePart",
    "ContentPart",
    "Message",
    "GenerationSettings",
    "Usage",
    "Timings",
    "Generation",
    "ModelCard",
    "VLMBackend",
]


class TextPart(BaseModel):
    """A piece of text inside a message."""

    type: Literal["text"] = "text"
    text: str


class ImagePart(BaseModel):
    """An image inside a message, already at the resolution the model should see."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    type: Literal["image"] = "image"
    image: Image.Image = Field(exclude=True)
    label: str | None = Field(None, description="What this image is, e.g. 'low-res view' or 'crop 3'.")

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class Message(BaseModel):
    """One chat turn.

    Crops always arrive in a ``user`` turn: several runtimes (llama.cpp among them) drop or mangle images in
    ``tool`` turns, so with native function calling the ``tool`` turn only acknowledges the call and the
    images follow in a user turn.
    """

    role: Literal["system", "user", "assistant", "tool"]
    content: list[ContentPart]
    tool_calls: list[dict[str, Any]] | None = Field(
        None, description="Native function calls of an assistant turn (OpenAI format: id, type, function)."
    )
    tool_call_id: str | None = Field(None, description="For a tool turn: the id of the call it answers.")

    @classmethod
    def text(cls, role: Literal["system", "user", "assistant", "tool"], text: str) -> "Message":
        return cls(role=role, content=[TextPart(text=text)])

    @property
    def images(self) -> list[Image.Image]:
        return [p.image for p in self.content if isinstance(p, ImagePart)]

    @property
    def text_content(self) -> str:
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly view without pixel data (for traces and logs)."""
        parts: list[dict[str, Any]] = []
        for p in self.content:
            if isinstance(p, TextPart):
                parts.append({"type": "text", "text": p.text})
            else:
                parts.append({"type": "image", "label": p.label, "size": list(p.image.size)})
        out: dict[str, Any] = {"role": self.role, "content": parts}
        if self.tool_calls:
            out["tool_calls"] = self.tool_calls
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        return out


class GenerationSettings(BaseModel):
    """Decoding settings shared by every backend (greedy by default, for reproducible answers)."""

    max_new_tokens: int = Field(128, ge=1)
    temperature: float = Field(0.0, ge=0.0, description="0 means greedy decoding.")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = None
    timeout_s: float | None = Field(None, gt=0, description="Wall-clock limit for one call, where supported.")


class Usage(BaseModel):
    """What one call cost, counted by the backend from what it really processed."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    prefilled_tokens: int = Field(0, description="Prompt tokens computed in this call (fewer when a cache was reused).")
    cached_tokens: int = Field(0, description="Prompt tokens taken from the previous turn's cache.")
    image_tokens: list[int] = Field(
        default_factory=list, description="Visual tokens of each image in the prompt, in order (real counts)."
    )


class Timings(BaseModel):
    prefill_s: float = 0.0
    decode_s: float = 0.0

    @property
    def total_s(self) -> float:
        return self.prefill_s + self.decode_s


class Generation(BaseModel):
    """A backend's reply to one chat call."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    text: str
    finish_reason: Literal["stop", "length", "tool_calls", "error"] = "stop"
    tool_calls: list[dict[str, Any]] = Field(default_factory=list, description="Native function calls, if any.")
    usage: Usage = Field(default_factory=Usage)
    timings: Timings = Field(default_factory=Timings)
    state: Any = Field(None, exclude=True, description="Opaque handle to pass back on the next turn (KV cache).")


class ModelCard(BaseModel):
    """How an AwaRes-trained model expects to be prompted (``awares.json`` beside its weights).

    A model fine-tuned with a particular system prompt, crop set and low-res policy should be run with the
    same ones; the loop uses these as defaults when the caller does not override them.
    """

    format: str = "awares-model-card/1"
    name: str | None = Field(None, description="Name of a built-in card (e.g. 'awares-official').")
    family: str | None = None
    crop_set: str = "awares9"
    lowres: dict[str, Any] | None = None
    system_prompt: str | None = None
    crops_turn_text: str | None = Field(
        None, description="Template with a {regions} placeholder; '' sends the crops as a turn of images only.")
    request_format: Literal["text", "tool"] = "text"
    chat_template: str | None = Field(
        None, description="A shipped chat template the model was trained with (awares_tool/assets/chat_templates), "
                          "applied at inference; None: the checkpoint's own.")
    min_pixels: int | None = Field(None, description="The processor's min_pixels the model was trained with.")
    max_pixels: int | None = Field(None, description="The processor's max_pixels the model was trained with.")
    model_ids: list[str] = Field(default_factory=list, description="Hub ids this card belongs to.")
    source: str | None = Field(None, description="Where the protocol and wording come from.")
    image_size: list[int] | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)

    model_config = ConfigDict(extra="allow")

    @classmethod
    def read(cls, path: "str | os.PathLike[str]") -> "ModelCard":
        """The card at ``path`` (``awares.json`` or the folder holding it), for a card the user named.

        Raises:
            BackendUnavailableError: The file is missing, unreadable or not a valid card.
        """
        p = Path(path)
        file = p / "awares.json" if p.is_dir() else p
        try:
            return cls.model_validate_json(file.read_text(encoding="utf-8"))
        except OSError as e:
            raise BackendUnavailableError(f"cannot read the model card {file}: {e}") from e
        except ValueError as e:
            raise BackendUnavailableError(f"{file} is not a valid awares.json model card: {e}") from e

    @classmethod
    def from_folder(cls, folder: "str | os.PathLike[str]") -> "ModelCard | None":
        """The ``awares.json`` beside a model's weights, or None (an unreadable card is logged and ignored)."""
        card = Path(folder) / "awares.json"
        if not card.is_file():
            return None
        try:
            return cls.model_validate_json(card.read_text())
        except ValueError as e:
            logging.getLogger(__name__).warning("ignoring unreadable model card %s: %s", card, e)
            return None


@runtime_checkable
class VLMBackend(Protocol):
    """A vision-language model that can hold a multi-turn chat with images.

    Implementations: :class:`~awares_tool.backends.transformers.TransformersBackend` (any Hugging Face
    image-text-to-text model), ``LlamaCppBackend`` (GGUF on CPU), ``OpenAIBackend`` (vLLM, llama-server,
    Ollama, hosted APIs) and :class:`~awares_tool.backends.scripted.ScriptedBackend` (fixed replies, for tests).

    Attributes:
        name: Short human-readable id, e.g. ``"transformers:/models/tiny"``.
        token_family: Token-accounting family (see :mod:`awares_tool.tokens`) used to estimate visual tokens
            when the backend cannot count them itself, or None.
        model_card: The model's ``awares.json`` if it has one.

    A backend may also define ``supports_tool_images = True`` when its chat format renders images inside
    ``tool`` turns (then a tool-call request is answered in a tool turn, as TRL's tool loop trains models),
    and ``count_image_tokens(width, height) -> int`` when it can count visual tokens exactly.
    """

    name: str
    token_family: str | None
    model_card: ModelCard | None

    def generate(
        self,
        messages: Sequence[Message],
        settings: GenerationSettings,
        *,
        state: Any = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> Generation:
        """Reply to ``messages``.

        Args:
            messages: The whole conversation so far (system, user, assistant turns).
            settings: Decoding settings.
            state: The ``state`` of this backend's previous :class:`Generation` in the same conversation, or
                None. A backend may use it to skip re-processing the shared prefix; it must give the same
                reply either way.
            tools: OpenAI-style tool declarations for backends with native function calling; others ignore it.
        """
        ...

    def close(self) -> None:
        """Release the model (memory, file handles, server connections)."""
        ...
