"""Text encoder for dense retrieval: any Hugging Face encoder through `transformers`.

Defaults are E5's (`intfloat/e5-base-v2`): "query: " / "passage: " prefixes, masked mean pooling,
L2 normalisation, max length 256, fp16 on GPU (as Search-R1 and ExpandSearch serve it). Pooling,
prefixes and max length are settings because other encoders need other choices (BGE: CLS pooling
and an instruction prefix; sentence-transformers MiniLM: mean pooling, no prefix).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np

logger = logging.getLogger(__name__)

POOLINGS = ("mean", "cls", "pooler")


@dataclass(frozen=True)
class EncoderConfig:
    """What determines the vectors; recorded in an index's params.json and checked when it is loaded."""

    model: str = "intfloat/e5-base-v2"  # HF model name or local directory
    pooling: str = "mean"  # mean | cls | pooler (E5: mean)
    query_prefix: str = "query: "  # E5 convention
    passage_prefix: str = "passage: "  # E5 convention
    max_length: int = 256  # tokens; Search-R1 serves with 256
    normalize: bool = True  # L2-normalise, so inner product = cosine

    def identity(self) -> dict:
        return asdict(self)


def resolve_device(device: str) -> str:
    """`auto` is the first CUDA device when torch sees one, else the CPU."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class Encoder:
    """Batched, inference-mode encoding to float32 numpy rows (C-contiguous, what faiss wants)."""

    def __init__(self, config: EncoderConfig, device: str = "auto", fp16: bool = True, batch_size: int = 256):
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # quiet by default: no bars inside a server
        if config.pooling not in POOLINGS:
            raise ValueError(f"pooling={config.pooling!r}: choose one of {POOLINGS}")
        self.config = config
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(config.model)
        model = AutoModel.from_pretrained(config.model)
        if fp16 and self.device.startswith("cuda"):
            model = model.half()
        self.model = model.to(self.device).eval()
        self.dim = int(model.config.hidden_size)
        self._torch = torch
        logger.info("encoder %s on %s (dim %d, fp16=%s)", config.model, self.device, self.dim, model.dtype)

    def encode(self, texts: list[str], is_query: bool) -> np.ndarray:
        """Encode texts (prefix added here) into a float32 array (len(texts), dim)."""
        prefix = self.config.query_prefix if is_query else self.config.passage_prefix
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            chunk = [prefix + text for text in texts[start : start + self.batch_size]]
            out[start : start + len(chunk)] = self._encode_batch(chunk)
        return out

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        batch = self.tokenizer(
            texts, max_length=self.config.max_length, padding=True, truncation=True, return_tensors="pt"
        ).to(self.device)
        with torch.inference_mode():
            output = self.model(**batch)
            if self.config.pooling == "mean":
                mask = batch["attention_mask"].unsqueeze(-1).to(output.last_hidden_state.dtype)
                pooled = (output.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1)
            elif self.config.pooling == "cls":
                pooled = output.last_hidden_state[:, 0]
            else:
                pooled = output.pooler_output
            pooled = pooled.float()
            if self.config.normalize:
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled.cpu().numpy()
