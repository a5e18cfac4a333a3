"""espnet-otreg: optimal transport for speech recognition, as an ESPnet plugin."""

from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

# Stock ESPnet entry points (python -m espnet2.bin.asr_train, asr_inference,
# Speech2Text.from_pretrained) build models from espnet2.tasks.asr.model_choices, which
# knows `model: gmot` only once espnet_otreg has been imported. ESPnet has no plugin
# registry, so the package installs a start-up hook: a .pth file next to it in
# site-packages, which Python's `site` runs at every interpreter start. It imports only
# espnet_otreg/__init__ (no torch): that installs an import hook which registers our
# models right after espnet2.tasks.asr is imported (espnet_otreg/_hooks.py).
# ESPNET_OTREG_AUTOLOAD=0 turns it off; a removed package makes it a no-op.
STARTUP_PTH = "espnet_otreg-startup.pth"
STARTUP_LINE = (
    "import os, importlib.util; os.environ.get('ESPNET_OTREG_AUTOLOAD', '1') == '0' "
    "or importlib.util.find_spec('espnet_otreg') is None or __import__('espnet_otreg')\n"
)


def _write_startup_pth(directory) -> str:
    path = Path(directory) / STARTUP_PTH
    path.write_text(STARTUP_LINE, encoding="utf-8")
    return str(path)


class BuildPyWithStartupHook(build_py):
    """Wheels and plain installs: the .pth goes to the top of the wheel (site-packages)."""

    def run(self):
        super().run()
        _write_startup_pth(self.build_lib)

    def get_outputs(self, include_bytecode=1):
        return super().get_outputs(include_bytecode) + [str(Path(self.build_lib) / STARTUP_PTH)]


cmdclass = {"build_py": BuildPyWithStartupHook}
try:  # editable installs (pip install -e, PEP 660) build no build_lib wheel
    from setuptools.command.editable_wheel import editable_wheel

    class EditableWheelWithStartupHook(editable_wheel):
        """``pip install -e``: files written to the unpacked editable wheel's root are
        installed into site-packages; setuptools writes its namespace .pth files there
        in this step (setuptools >= 64), and so do we."""

        def _install_namespaces(self, installation_dir, pth_prefix):
            super()._install_namespaces(installation_dir, pth_prefix)
            _write_startup_pth(installation_dir)

    cmdclass["editable_wheel"] = EditableWheelWithStartupHook
except ImportError:  # setuptools < 64: no PEP 660 editable installs to hook into
    pass

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
    # Toneless syllables (the OTReg experiment's encoder targets and syllable error rate);
    # espnet itself pins the version.
    "pypinyin",
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
    cmdclass=cmdclass,
    install_requires=install_requires,
    extras_require=extras_require,
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: Apache Software License",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
