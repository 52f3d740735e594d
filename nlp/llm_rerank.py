"""Optional LLM re-rank of mapping candidates through a LangChain chat model.

The mapping engine (lexical + embedding candidates, feature re-rank) works fully offline. When
a user configures a chat model — any OpenAI-compatible endpoint (vLLM, llama.cpp server,
Ollama's ``/v1``) or Ollama's own API — :class:`LlmReranker` shows it one local code and its
top candidates and asks it to pick the candidate with the same meaning, or none, with a
confidence and a short rationale the terminologist reads next to the suggestion.

The model is untrusted: its answer is parsed robustly (code fences, prose around the JSON),
validated with pydantic, and a choice outside the list or an unparsable answer gets one
corrective retry before :class:`LlmError`. LangChain is imported lazily, so importing this
module loads no LangChain code and nothing contacts the network until :meth:`LlmReranker.choose`
calls the model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage

__all__ = [
    "PROVIDERS",
    "LlmChoice",
    "LlmConfig",
    "LlmError",
    "LlmReranker",
    "RerankItem",
    "build_messages",
    "chat_model",
    "parse_answer",
]

#: Chat model providers :func:`chat_model` can build (with the ``llm`` extra installed).
PROVIDERS = ("openai", "ollama")

#: Longest rationale kept (characters); longer ones are cut at a word boundary.
MAX_RATIONALE = 300
#: How much of an unusable answer is quoted in an error message.
_QUOTE = 160


class LlmError(RuntimeError):
    """The chat model is unavailable, failed, or gave no usable answer; the message says which."""


@dataclass(frozen=True, slots=True)
class RerankItem:
    """One candidate concept shown to the model."""

    #: Opaque id the engine uses (the concept uid); never shown to the model.
    key: str
    code: str
    display: str
    system: str
    #: Extra facts that tell look-alike candidates apart, e.g. ``"unit mg/dL; class Chem"``.
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class LlmChoice:
    """The model's pick among the candidates, with its stated confidence and reason."""

    #: The chosen :attr:`RerankItem.key`; ``None`` when the model says no candidate fits.
    key: str | None
    #: 0..1 as stated by the model, clamped.
    confidence: float
    #: One or two sentences, whitespace-normalised, at most :data:`MAX_RATIONALE` characters.
    rationale: str
    #: The model's name.
    model: str

    @property
    def method(self) -> str:
        """Provenance of a mapping suggested this way (``"llm:<model>"``)."""
        return f"llm:{self.model}"


@dataclass(frozen=True, slots=True)
class LlmConfig:
    """A user's chat model: which provider, which model, where."""

    #: ``"openai"`` (any OpenAI-compatible endpoint: vLLM, llama.cpp server, Ollama's /v1)
    #: or ``"ollama"`` (Ollama's native API).
    provider: str
    model: str
    base_url: str | None = None
    #: Never logged, never in ``repr``/``str`` or error text.
    api_key: str | None = field(default=None, repr=False)
    temperature: float = 0.0
    timeout_s: float = 60.0


def chat_model(config: LlmConfig) -> BaseChatModel:
    """Build the LangChain chat model ``config`` describes. Nothing contacts the network here.

    The provider packages are the optional ``llm`` extra; without them this raises
    :class:`LlmError` saying what to install. An ``openai`` endpoint with a ``base_url`` but no
    ``api_key`` gets a placeholder key: local servers (vLLM, llama.cpp, Ollama) ignore it, and
    the OpenAI client refuses to start without one.
    """
    if config.provider not in PROVIDERS:
        raise LlmError(
            f"unknown chat model provider {config.provider!r}; expected one of {PROVIDERS}"
        )
    if not config.model.strip():
        raise LlmError(f"chat model provider {config.provider!r} needs a model name")
    if config.timeout_s <= 0:
        raise LlmError(f"chat model timeout must be positive, got {config.timeout_s}")
    try:
        if config.provider == "openai":
            return _openai(config)
        return _ollama(config)
    except ImportError as e:
        package = f"langchain-{config.provider}"
        raise LlmError(
            f"chat model provider {config.provider!r} needs {package}: install medshadow[llm]"
        ) from e
    except ValueError as e:  # pydantic's ValidationError of the model's own settings
        raise LlmError(
            f"cannot configure {config.provider} chat model {config.model!r}: "
            f"{_redact(str(e), config.api_key)}"
        ) from None


def _openai(config: LlmConfig) -> BaseChatModel:
    from langchain_openai import ChatOpenAI
    from pydantic import SecretStr

    key = config.api_key
    if key is None and config.base_url is not None:
        key = "unused"
    return ChatOpenAI(
        model=config.model,
        base_url=config.base_url,
        api_key=SecretStr(key) if key is not None else None,
        temperature=config.temperature,
        timeout=config.timeout_s,
    )


def _ollama(config: LlmConfig) -> BaseChatModel:
    from langchain_ollama import ChatOllama

    client: dict[str, Any] = {"timeout": config.timeout_s}
    if config.api_key is not None:  # an Ollama behind an authenticating proxy
        # An httpx auth callable rather than a header: the model's repr shows client_kwargs.
        token = config.api_key

        def bearer(request: Any) -> Any:
            request.headers["Authorization"] = f"Bearer {token}"
            return request

        client["auth"] = bearer
    return ChatOllama(
        model=config.model,
        base_url=config.base_url,
        temperature=config.temperature,
        format="json",  # Ollama constrains decoding to JSON: fewer retries with small models
        client_kwargs=client,
    )


# --------------------------------------------------------------------------------- prompt

_SYSTEM = """\
You are a clinical terminologist mapping a local code of a medical organisation onto a \
standard terminology.
You get the local code's display text (it may be in any language, e.g. Russian, and may be \
abbreviated), sometimes context about how the code is used (units, value ranges, frequency), \
and a numbered list of candidate standard concepts.
Pick the ONE candidate whose meaning is the same as the local code's. Use the context: units \
and value ranges tell similar lab tests apart. If no candidate means the same thing, choose \
null; do not pick a merely related, broader or narrower concept as if it were the same.
Answer with only this JSON object and nothing else:
{"choice": <candidate number or null>, "confidence": <number from 0 to 1>, \
"rationale": "<one or two sentences>"}"""


def _one_line(text: str) -> str:
    """Whitespace collapsed, so a display cannot break the numbered list apart."""
    return " ".join(text.split())


def build_messages(
    source: str,
    context: str | None,
    candidates: Sequence[RerankItem],
    *,
    max_candidates: int = 10,
) -> list[BaseMessage]:
    """The chat messages asking for a choice: a system message with the task and the answer
    format, then the local code and the first ``max_candidates`` candidates, numbered from 1."""
    from langchain_core.messages import HumanMessage, SystemMessage

    shown = candidates[:max_candidates]
    lines = [f"Local code display: {json.dumps(_one_line(source), ensure_ascii=False)}"]
    if context and context.strip():
        lines.append(f"Context: {json.dumps(_one_line(context), ensure_ascii=False)}")
    lines.append("")
    lines.append("Candidates:")
    for number, item in enumerate(shown, start=1):
        line = f"{number}. {_one_line(item.display)} [{_one_line(item.system)} {item.code}]"
        if item.detail and item.detail.strip():
            line += f" — {_one_line(item.detail)}"
        lines.append(line)
    lines.append("")
    lines.append(f"Answer with the JSON object; choice is a number from 1 to {len(shown)} or null.")
    return [SystemMessage(content=_SYSTEM), HumanMessage(content="\n".join(lines))]


# --------------------------------------------------------------------------------- answer

_NULLS = frozenset({"", "null", "none", "no", "nil", "n/a"})


class _Answer(BaseModel):
    """The JSON the model is asked for; extra keys are ignored."""

    model_config = ConfigDict(extra="ignore")

    choice: int | None
    confidence: float
    rationale: str

    @field_validator("choice", mode="before")
    @classmethod
    def _choice(cls, value: object) -> object:
        if isinstance(value, bool):  # JSON true/false is no candidate number
            raise ValueError("choice must be a candidate number or null, not a boolean")
        if isinstance(value, str):
            text = value.strip().lower().lstrip("#")
            if text in _NULLS:
                return None
            return text
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    @field_validator("confidence", mode="before")
    @classmethod
    def _confidence(cls, value: object) -> object:
        if isinstance(value, bool):
            raise ValueError("confidence must be a number from 0 to 1, not a boolean")
        if isinstance(value, str):
            return value.strip().rstrip("%").strip()
        return value


class _Unusable(ValueError):
    """Why one answer could not be used (becomes the corrective message and the error text)."""


_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n?(.*?)```", re.DOTALL)


def _json_objects(text: str) -> list[dict[str, Any]]:
    """Every JSON object in ``text``: fenced blocks first, then any ``{...}`` in the prose."""
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    for chunk in [*_FENCE.findall(text), text]:
        start = chunk.find("{")
        while start != -1:
            try:
                value, end = decoder.raw_decode(chunk, start)
            except json.JSONDecodeError:
                start = chunk.find("{", start + 1)
                continue
            if isinstance(value, dict):
                found.append(value)
            start = chunk.find("{", end)
    return found


def parse_answer(text: str, candidates: int) -> tuple[int | None, float, str]:
    """``(choice index from 0 or None, confidence clamped to 0..1, rationale)`` from a model's
    reply, or :class:`ValueError` saying why the reply is unusable."""
    objects = [o for o in _json_objects(text) if "choice" in o]
    if not objects:
        raise _Unusable('no JSON object with a "choice" key in the answer')
    try:
        answer = _Answer.model_validate(objects[0])
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'answer'}: {err['msg']}"
            for err in e.errors()
        )
        raise _Unusable(f"invalid answer ({problems})") from None
    if answer.choice is not None and not 1 <= answer.choice <= candidates:
        raise _Unusable(
            f"choice {answer.choice} is not a candidate number (1 to {candidates}) or null"
        )
    confidence = answer.confidence if answer.confidence == answer.confidence else 0.0  # NaN
    confidence = min(1.0, max(0.0, confidence))
    index = None if answer.choice is None else answer.choice - 1
    return index, confidence, _rationale(answer.rationale)


def _rationale(text: str) -> str:
    text = _one_line(text)
    if len(text) <= MAX_RATIONALE:
        return text
    cut = text[: MAX_RATIONALE - 1]
    space = cut.rfind(" ")
    if space > MAX_RATIONALE // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:") + "…"


def _quote(text: str) -> str:
    text = _one_line(text)
    return repr(text if len(text) <= _QUOTE else text[: _QUOTE - 1] + "…")


def _redact(text: str, *secrets: str | None) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


# ------------------------------------------------------------------------------- reranker


class LlmReranker:
    """Asks a chat model which of a local code's candidates means the same thing.

    ``name`` is the model's name, recorded as provenance (``llm:<name>``). Only the first
    ``max_candidates`` candidates are sent; the engine passes them best first.
    """

    def __init__(self, model: BaseChatModel, *, name: str, max_candidates: int = 10) -> None:
        if max_candidates < 1:
            raise ValueError(f"max_candidates must be at least 1, got {max_candidates}")
        self.model = model
        self.name = name
        self.max_candidates = max_candidates
        self._secrets: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: LlmConfig, *, max_candidates: int = 10) -> LlmReranker:
        """A reranker over :func:`chat_model` ``(config)``, named after the configured model;
        the api key is also scrubbed from the text of any transport error."""
        reranker = cls(chat_model(config), name=config.model, max_candidates=max_candidates)
        reranker._secrets = (config.api_key,) if config.api_key else ()
        return reranker

    def __repr__(self) -> str:
        return f"LlmReranker(name={self.name!r}, max_candidates={self.max_candidates})"

    def choose(
        self, source: str, context: str | None, candidates: Sequence[RerankItem]
    ) -> LlmChoice:
        """The model's choice for the local code ``source`` (its display, any language) among
        ``candidates``, with ``context`` about how the code is used (e.g. ``"local lab code
        LB0042, unit mmol/L, values 3.9–7.8 (n=120)"``).

        An answer that is not the requested JSON, or picks a number outside the list, gets one
        corrective follow-up; a second unusable answer, or a failing model, raises
        :class:`LlmError`. With no candidates the model is not asked and the choice is none.
        """
        shown = list(candidates[: self.max_candidates])
        if not shown:
            return LlmChoice(None, 0.0, "No candidates to choose from.", self.name)
        from langchain_core.messages import HumanMessage

        messages = build_messages(source, context, shown, max_candidates=self.max_candidates)
        problems: list[str] = []
        for attempt in (1, 2):
            reply = self._ask(messages)
            try:
                index, confidence, rationale = parse_answer(reply.text, len(shown))
            except _Unusable as e:
                problems.append(f"attempt {attempt}: {e}: {_quote(reply.text)}")
                messages = [
                    *messages,
                    reply,
                    HumanMessage(
                        content=(
                            f"Your answer could not be used: {e}. Reply with only the JSON "
                            '{"choice": <number from 1 to '
                            f'{len(shown)} or null>, "confidence": <0 to 1>, '
                            '"rationale": "<one or two sentences>"}.'
                        )
                    ),
                ]
                continue
            key = None if index is None else shown[index].key
            return LlmChoice(key, confidence, rationale, self.name)
        raise LlmError(
            f"chat model {self.name!r} gave no usable answer for {_quote(source)} "
            f"after 2 attempts: {' | '.join(problems)}"
        )

    def _ask(self, messages: list[BaseMessage]) -> BaseMessage:
        # Transport and provider failures come as many exception types (openai, httpx, ollama,
        # connection errors); each becomes one LlmError naming the model and the cause.
        try:
            return self.model.invoke(messages)
        except Exception as e:
            text = f"{type(e).__name__}: {e}"
            cause = _redact(text, *self._secrets)
            error = LlmError(f"chat model {self.name!r} failed: {_quote(cause)}")
            if cause != text:  # the original carries the key: do not chain it into tracebacks
                raise error from None
            raise error from e
