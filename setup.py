"""espnet-otreg: optimal transport for speech recognition, as an ESPnet plugin."""

from pathlib import Path

from setuptools import find_packages, setup

# torch and torchaudio must be a matching pair (torchaudio 2.11 needs torch 2.11), and
# espnet2.tasks.asr imports torchaudio at import time. Without these pins pip
# backtracks through many torch releases.
install_requires = [
    "torch==2.11.0",
    "torchaudio==2.11.0",
    "espnet==202511",
    "pot>=0.9.7,<0.10",
    "jiwer>=3.0,<5",
    "kaldiio>=2.18",
    "sentencepiece>=0.2",
    "transformers>=4.57,<6",
    "matplotlib>=3.7",
    "numpy>=1.24",
    "tqdm>=4.60",
    # ESPnet's trainer writes TensorBoard scalars and imports it unconditionally.
    "tensorboard>=2.14,<3",
    # FLEURS stage 1 reads the Hub's parquet conversion.
    "pyarrow>=15",
    # Speech2Text.from_pretrained (stock ESPnet) loads zips and Hub models through it.
    "espnet_model_zoo>=0.1.7",
    # Model cards (ModelCard API) and uploads; also FLEURS downloads.
    "huggingface_hub>=0.24",
    # CER over grapheme clusters (\X) for scripts without spaces (th, lo, my, km, ...).
    "regex>=2023.0",
]

extras_require = {
    # peft: the LoRA tests and the FLEURS mini recipe's phase 2 (else they skip LoRA).
    "test": ["pytest>=8", "pytest-timeout>=2.3", "peft>=0.13"],
    "lora": ["peft>=0.13"],
}
extras_require["all"] = sorted({p for v in extras_require.values() for p in v})

setup(
    name="espnet-otreg",
    version="0.1.0",
    description=(
        "Optimal transport for speech recognition in ESPnet: GM-OT distillation "
        "and OTReg for speech-LLMs, on a batched GPU-friendly OT library"
    ),
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["espnet_otreg", "espnet_otreg.*"]),
    # The recipes' shared stage library (sourced by egs2/*/asr1/path.sh).
    package_data={"espnet_otreg.recipe": ["*.sh"]},
    install_requires=install_requires,
    extras_require=extras_require,
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: Apache Software License",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
