"""Hugging Face Whisper encoder as an ESPnet ``AbsEncoder`` taking raw waveforms.

The log-mel front end is Whisper's own (``WhisperFeatureExtractor``: 25 ms Hann window,
10 ms hop, its mel filters, ``log10``, floor at ``max - 8``, ``(x + 4) / 4``), computed
batched on the model's device. Zero padding at the end of a batch is what Whisper's
30 s padding is, so a padded utterance gets the same features as alone.

Whisper was trained on 30 s windows (3000 mel frames). ``pad_to_30s=True`` (default)
feeds exactly that, as Whisper-based speech-LLMs usually do; ``False`` runs the encoder
on the batch's own length (positional embeddings cut to it): much faster on short
utterances, a mismatch to pre-training. Either way only the first
``ceil(n_frames / 2)`` outputs of each utterance (its real audio) are returned.
"""

from typing import Optional, Tuple

import torch
from espnet2.asr.encoder.abs_encoder import AbsEncoder

from espnet_otreg.slm.hf import enable_checkpointing, weight_dtype


class HFWhisperEncoder(AbsEncoder):
    """Encoder of a Hugging Face Whisper checkpoint (name or local path).

    Args:
        input_size: ignored (the input is the raw 16 kHz waveform); ESPnet passes it.
        model_name_or_path: e.g. ``openai/whisper-large-v3`` or a local directory.
        freeze: keep the weights fixed (they then stay out of our checkpoints, see
            :class:`espnet_otreg.slm.espnet_model.ESPnetSLMModel`).
        dtype: weight dtype, ``auto`` = bfloat16 on a bf16 GPU when frozen, else float32.
        pad_to_30s: see the module docstring.
        gradient_checkpointing: recompute layer activations in backward (trainable case).
        config: a ``WhisperConfig`` (or its keywords) to build a randomly initialised
            encoder instead of loading ``model_name_or_path`` (benchmarks at real
            sizes, no download).
        revision: the Hub commit (or tag/branch) of ``model_name_or_path``; None: default.
    """

    #: the submodule holding the pretrained weights (left out of checkpoints while frozen)
    pretrained_submodule = "model"

    def __init__(
        self,
        input_size: int = 1,
        model_name_or_path: str = "openai/whisper-large-v3",
        freeze: bool = True,
        dtype: str = "auto",
        pad_to_30s: bool = True,
        gradient_checkpointing: bool = False,
        config=None,
        revision=None,
    ):
        super().__init__()
        from transformers import WhisperFeatureExtractor, WhisperModel
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        torch_dtype = weight_dtype(dtype, freeze)
        if isinstance(config, dict):  # from YAML
            from transformers import WhisperConfig

            config = WhisperConfig(**config)
        if config is not None:
            self.model = WhisperEncoder(config).to(torch_dtype)
            fe = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
        else:
            whisper = WhisperModel.from_pretrained(model_name_or_path, dtype=torch_dtype,
                                                   revision=revision)
            self.model = whisper.get_encoder()  # the decoder goes with `whisper`
            del whisper
            fe = WhisperFeatureExtractor.from_pretrained(model_name_or_path, revision=revision)
        self.n_fft, self.hop_length = fe.n_fft, fe.hop_length
        self.register_buffer(
            "mel_filters", torch.tensor(fe.mel_filters, dtype=torch.float32).T, persistent=False
        )
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        self.n_frames_30s = self.model.config.max_source_positions * 2
        self.pad_to_30s = pad_to_30s
        self.freeze = freeze
        if freeze:
            self.model.requires_grad_(False)
        if gradient_checkpointing:
            enable_checkpointing(self.model)

    def output_size(self) -> int:
        return self.model.config.d_model

    def log_mel(self, wav: torch.Tensor, lengths: torch.Tensor):
        """``(B, T)`` waveform -> ``(B, n_mels, F)`` Whisper log-mel, ``F = T // hop``."""
        stft = torch.stft(
            wav.float(), self.n_fft, self.hop_length, window=self.window, return_complex=True
        )
        power = (stft[..., :-1].abs() ** 2).contiguous()
        mel = torch.clamp(self.mel_filters @ power, min=1e-10).log10()
        mel = torch.maximum(mel, mel.amax(dim=(1, 2), keepdim=True) - 8.0)
        return (mel + 4.0) / 4.0, lengths // self.hop_length

    def forward(
        self,
        xs_pad: torch.Tensor,
        ilens: torch.Tensor,
        prev_states: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, None]:
        if xs_pad.dim() != 2:
            raise ValueError(
                f"HFWhisperEncoder takes a mono waveform batch (B, T), got {tuple(xs_pad.shape)}"
                " (use frontend: none; multi-channel audio is not supported)"
            )
        n_samples_30s = self.n_frames_30s * self.hop_length
        if xs_pad.size(1) > n_samples_30s:
            raise ValueError(
                f"audio of {xs_pad.size(1) / (100 * self.hop_length):.1f} s is longer than the"
                f" Whisper encoder's {self.n_frames_30s / 100:.0f} s window; filter long"
                " utterances out of the data"
            )
        if self.pad_to_30s:  # exactly Whisper's input: zeros up to 30 s, then log-mel
            xs_pad = torch.nn.functional.pad(xs_pad, (0, n_samples_30s - xs_pad.size(1)))
        mel, n_frames = self.log_mel(xs_pad, ilens)
        mel = mel.to(self.model.conv1.weight.dtype)
        if self.pad_to_30s:
            hidden = self.model(mel).last_hidden_state
        else:
            hidden = self._forward_any_length(mel)
        olens = torch.div(n_frames + 1, 2, rounding_mode="floor")
        return hidden[:, : int(olens.max())], olens, None

    def _forward_any_length(self, mel: torch.Tensor) -> torch.Tensor:
        enc = self.model
        x = torch.nn.functional.gelu(enc.conv1(mel))
        x = torch.nn.functional.gelu(enc.conv2(x)).permute(0, 2, 1)
        x = x + enc.embed_positions.weight[: x.size(1)]
        x = torch.nn.functional.dropout(x, p=enc.dropout, training=enc.training)
        for layer in enc.layers:
            out = layer(x, None)
            x = out[0] if isinstance(out, tuple) else out
        return enc.layer_norm(x)

