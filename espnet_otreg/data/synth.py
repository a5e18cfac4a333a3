"""Synthetic speech for the experiments' corpora: espeak-ng (Debian ``espeak-ng``), 16 kHz,
white noise at a given SNR. Deterministic: the same text, voice, SNR and seed give the
same samples.

A voice is espeak-ng's ``<language>+<variant>`` at a pitch (0-99) and a rate (words per
minute); :class:`Voice` holds the three. Used by the AISHELL corpus of the GM-OT
experiment and the cross-domain corpus of the OTReg experiment (their ``local/``).
"""

from __future__ import annotations

import io
import subprocess
from dataclasses import dataclass

import numpy as np

FS = 16000


@dataclass(frozen=True)
class Voice:
    variant: str          # espeak-ng variant: m1..m7, f1..f5, ...
    pitch: int            # 0-99
    rate: int             # words per minute
    language: str = "cmn"

    def faster(self, factor: float) -> "Voice":
        """The same voice speaking ``factor`` times as fast."""
        return Voice(self.variant, self.pitch, int(round(self.rate * factor)), self.language)


def espeak(text: str, voice: Voice, name: str = "") -> np.ndarray:
    """``text`` spoken by ``voice``, float32 at :data:`FS`. ``name`` (an utterance id)
    goes into the error if espeak-ng fails."""
    import soundfile as sf
    from scipy.signal import resample_poly

    proc = subprocess.run(
        ["espeak-ng", "-v", f"{voice.language}+{voice.variant}", "-p", str(voice.pitch),
         "-s", str(voice.rate), "--stdout", text],
        capture_output=True, check=False,
    )
    if proc.returncode != 0 or not proc.stdout:
        raise RuntimeError(f"{name}: espeak-ng failed on {text!r}: {proc.stderr.decode()[-300:]}")
    x, sr = sf.read(io.BytesIO(proc.stdout), dtype="float32")
    return resample_poly(x, FS, sr).astype(np.float32)


def add_noise(x: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    """White Gaussian noise at ``snr_db`` to the signal's mean power, then peak 0.5."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(len(x)).astype(np.float32)
    x = x + noise * np.sqrt(np.mean(x**2) / 10 ** (snr_db / 10))
    return 0.5 * x / max(np.abs(x).max(), 1e-6)


def wav_bytes(x: np.ndarray) -> bytes:
    """16-bit PCM WAV at :data:`FS`."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, x, FS, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def utterance(text: str, voice: Voice, snr_db: float, seed: int, name: str = "") -> bytes:
    """espeak-ng -> 16 kHz -> noise at ``snr_db`` -> 16-bit WAV bytes."""
    return wav_bytes(add_noise(espeak(text, voice, name), snr_db, seed))
