"""ESPnetGMOTModel: an ESPnet ASR model trained with GM-OT knowledge transfer.

Select it in a training YAML with ``model: gmot``; every other part (frontend,
specaug, normalize, encoder, CTC) is stock ESPnet and chosen as usual.

Training loss (per batch, ESPnet's CTC is summed over an utterance and averaged over
the batch)::

    L = L_asr + beta * (L_gmot + L_align) + lambda * L_ctc_fused

- ``L_asr``: the stock ESPnet loss (CTC with ``ctc_weight: 1.0``, the paper's set-up;
  hybrid CTC/attention also works with a decoder).
- ``L_gmot``, ``L_align``: the FGW distance of the coupling gamma* and the alignment
  loss of the frames projected into the teacher space (:mod:`espnet_otreg.asr.gmot`),
  averaged over the utterances that have a coupling.
- ``L_ctc_fused``: CTC on the fused acoustic-linguistic representation
  ``H_AL = LayerNorm(H_A + W Z^_A)``, where ``Z^_A = gamma* Z_L`` (row-normalised)
  brings the teacher's token features onto the frames.

Parts that exist for training only and are dropped at inference (``encode`` + CTC is
all ``Speech2Text`` uses) and by ``espnet_otreg.bin.export_ctc``: the adapter (two FC
layers, encoder dim -> teacher dim), the fusion layer and, unless shared, the fused
CTC head. The teacher is never part of the model's parameters or state dict.

What the paper states and what is our choice: the paper states the adapter (two FC
layers), the coupling, the projection, the alignment loss weighted by ``beta`` and a
fused representation with a CTC loss weighted by ``lambda``. It does not give the
fusion layer, whether the fused CTC shares the main CTC head, the exact way the loss
terms are summed, or default values other than ``alpha = 0.02``; ours are above and
in the argument list, all configurable. ``lambda`` is spelled ``lambda_`` because
``lambda`` is a Python keyword.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from typeguard import typechecked

from espnet2.asr.ctc import CTC
from espnet2.asr.decoder.abs_decoder import AbsDecoder
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from espnet2.asr.espnet_model import ESPnetASRModel
from espnet2.asr.frontend.abs_frontend import AbsFrontend
from espnet2.asr.postencoder.abs_postencoder import AbsPostEncoder
from espnet2.asr.preencoder.abs_preencoder import AbsPreEncoder
from espnet2.asr.specaug.abs_specaug import AbsSpecAug
from espnet2.layers.abs_normalize import AbsNormalize
from espnet2.torch_utils.device_funcs import force_gatherable

from espnet_otreg.asr.gmot import (
    GMOTAligner,
    GMOTConfig,
    GMOTOutput,
    coupling_stats,
    project_to_frames,
)
from espnet_otreg.asr.teacher import Teacher
from espnet_otreg.ot import lengths_to_mask

# Prefixes of the training-only parameters (absent from an exported CTC model).
TRAIN_ONLY_PREFIXES = ("adapter.", "fusion.", "ctc_fused.", "gmot.")


class ESPnetGMOTModel(ESPnetASRModel):
    """CTC (or CTC/attention) ASR with GM-OT distillation from a frozen BERT teacher.

    GM-OT args (``model_conf``; the others are :class:`ESPnetASRModel`'s):
        teacher: HF model name or local directory of the teacher (for
            ``teacher_source: online`` and for ``dump_teacher``).
        teacher_layer: teacher hidden state to use (-1: last layer).
        teacher_source: ``"cache"`` (default: features from the ``teacher_feats``
            data key, written once by ``dump_teacher``) or ``"online"`` (run the
            teacher on the transcript every step; it is loaded at the first step).
        teacher_dim: feature size of the teacher (768 for BERT-base); checked against
            the features at every step.
        adapter_hidden: hidden size of the two-layer adapter (default teacher_dim).
        alpha, rho, epsilon, ws, tau: the coupling (:class:`GMOTAligner`).
        window_mode, ws_frames, ws_tokens, prior, epsilon_mode, tau_frames,
            tau_tokens: further
            :class:`GMOTAligner` choices (defaults: today's behaviour).
        epsilon_schedule: None, or ``{start: e0, end: e1, steps: T}``: epsilon goes
            from ``e0`` to ``e1`` geometrically over the first ``T`` training steps
            (start smooth, end sharp; our option), then stays at ``e1``. The step
            count is a buffer (``gmot.step``), so a resumed run continues it.
        beta: weight of ``L_gmot + L_align``.
        lambda_: weight of the fused-representation CTC loss (0 disables the fusion).
        fusion_source: what the fused branch adds to the frames ``H_A``:
            ``"teacher"`` (default, our reading of the paper's ``W gamma* Z_L``, which
            the paper does not pin down between this and ``"acoustic"``: the teacher
            features of the reference transcript, which the decoder never sees),
            ``"acoustic"`` (``W gamma* Z~_L``: the frames rebuilt from their tokens'
            acoustic means ``gamma*^T H``, no teacher feature) or ``"none"`` (the
            fused CTC sees ``LayerNorm(H_A)`` alone: the extra CTC loss without any
            coupling). The last two are our ablations.
        edge_metric, align_loss, ot_max_iter, ot_inner_max_iter, ot_tol, ot_grad,
            ot_early_stop: :class:`GMOTAligner` options.
        share_fused_ctc: the fused CTC uses the main CTC head (default) or its own.

    ``alpha: 0`` gives OT-CAKT and ``alpha: 0`` with ``rho > 0`` TOT-CAKT.
    """

    @typechecked
    def __init__(
        self,
        vocab_size: int,
        token_list: Union[Tuple[str, ...], List[str]],
        frontend: Optional[AbsFrontend],
        specaug: Optional[AbsSpecAug],
        normalize: Optional[AbsNormalize],
        preencoder: Optional[AbsPreEncoder],
        encoder: AbsEncoder,
        postencoder: Optional[AbsPostEncoder],
        decoder: Optional[AbsDecoder],
        ctc: CTC,
        joint_network: Optional[torch.nn.Module] = None,
        teacher: str = "bert-base-chinese",
        teacher_layer: int = -1,
        teacher_source: str = "cache",
        teacher_dim: int = 768,
        adapter_hidden: Optional[int] = None,
        alpha: float = 0.02,
        rho: float = 0.5,
        epsilon: float = 0.1,
        ws: Optional[int] = 5,
        tau: Optional[float] = None,
        beta: float = 1.0,
        lambda_: float = 0.3,
        edge_metric: str = "cosine",
        align_loss: str = "cosine",
        ot_max_iter: int = 10,
        ot_inner_max_iter: int = 50,
        ot_tol: float = 1e-4,
        ot_grad: str = "envelope",
        ot_early_stop: bool = True,
        share_fused_ctc: bool = True,
        window_mode: str = "zero",
        ws_frames: Optional[int] = None,
        ws_tokens: Optional[int] = None,
        tau_frames: Optional[float] = None,
        tau_tokens: Optional[float] = None,
        prior: str = "inside",
        epsilon_mode: str = "absolute",
        epsilon_schedule: Optional[Dict[str, float]] = None,
        fusion_source: str = "teacher",
        ctc_weight: float = 1.0,
        interctc_weight: float = 0.0,
        **kwargs,
    ):
        # The coupling's options, validated once (GMOTConfig: a wrong value names its key).
        gmot_config = GMOTConfig.from_model_conf(
            {k: v for k, v in locals().items() if k in GMOTConfig.model_conf_keys()})
        if joint_network is not None:
            raise ValueError("model: gmot does not support transducer decoders")
        if interctc_weight != 0.0:
            raise ValueError("model: gmot does not support intermediate CTC (interctc_weight)")
        if ctc_weight == 0.0:
            raise ValueError("model: gmot needs a CTC branch (ctc_weight > 0)")
        if teacher_source not in ("cache", "online"):
            raise ValueError(
                f"teacher_source must be 'cache' or 'online', got {teacher_source!r}"
            )
        if beta < 0 or lambda_ < 0:
            raise ValueError(f"beta and lambda_ must be >= 0, got {beta}, {lambda_}")
        if fusion_source not in ("teacher", "acoustic", "none"):
            raise ValueError(
                f"fusion_source must be 'teacher', 'acoustic' or 'none', got {fusion_source!r}"
            )
        super().__init__(
            vocab_size=vocab_size,
            token_list=token_list,
            frontend=frontend,
            specaug=specaug,
            normalize=normalize,
            preencoder=preencoder,
            encoder=encoder,
            postencoder=postencoder,
            decoder=decoder,
            ctc=ctc,
            joint_network=None,
            ctc_weight=ctc_weight,
            interctc_weight=0.0,
            **kwargs,
        )
        d_enc = (postencoder or encoder).output_size()
        hidden = adapter_hidden or teacher_dim
        self.teacher_name = teacher
        self.teacher_layer = teacher_layer
        self.teacher_source = teacher_source
        self.teacher_dim = teacher_dim
        self.beta = beta
        self.lambda_ = lambda_
        self.adapter = torch.nn.Sequential(
            torch.nn.Linear(d_enc, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, teacher_dim)
        )
        self.gmot = GMOTAligner(gmot_config)
        self.fusion_source = fusion_source
        if lambda_ > 0:
            self.fusion = torch.nn.Sequential()
            if fusion_source != "none":  # (no unused parameters: DDP needs none)
                self.fusion.add_module("proj", torch.nn.Linear(teacher_dim, d_enc))
            self.fusion.add_module("norm", torch.nn.LayerNorm(d_enc))
            self.ctc_fused = None if share_fused_ctc else CTC(
                odim=vocab_size, encoder_output_size=d_enc
            )
        else:
            self.fusion = None
            self.ctc_fused = None
        # A plain object, not an nn.Module: never in parameters(), the optimizer or the
        # state dict. Loaded on first use (teacher_source: online).
        self._teacher: Optional[Teacher] = None

    # ------------------------------------------------------------------ teacher
    @property
    def teacher(self) -> Optional[Teacher]:
        """The online teacher once loaded (None before, and with cached features)."""
        return self._teacher

    def _load_teacher(self, device: torch.device) -> Teacher:
        if self._teacher is None:
            logging.info("GM-OT: loading the teacher %s (frozen)", self.teacher_name)
            self._teacher = Teacher(self.teacher_name, self.teacher_layer, device)
        return self._teacher.to(device)

    def ids_to_texts(self, text: torch.Tensor, text_lengths: torch.Tensor) -> List[str]:
        """Transcripts back from token ids, for the online teacher.

        Char and BPE token lists are joined; ``<space>`` and the SentencePiece word
        boundary become spaces; special tokens (``<blank>``, ``<unk>``, ...) vanish.
        """
        out = []
        for row, n in zip(text.tolist(), text_lengths.tolist()):
            toks = [self.token_list[i] for i in row[:n] if i >= 0]
            s = "".join(
                " " if t == "<space>" else "" if t.startswith("<") and t.endswith(">") else t
                for t in toks
            )
            out.append(s.replace("\u2581", " ").strip())
        return out

    def teacher_features(
        self,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        teacher_feats: Optional[torch.Tensor],
        teacher_feats_lengths: Optional[torch.Tensor],
        utt_id: Optional[Sequence[str]] = None,
    ) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        """``Z_L`` (B, M, D) and lengths, from the cache or the online teacher.

        Returns None in evaluation when cached features are missing (then only the
        ASR loss is computed); raises in training.
        """
        if self.teacher_source == "online":
            t = self._load_teacher(text.device)
            feats, lengths, _ = t(self.ids_to_texts(text, text_lengths))
        elif teacher_feats is None:
            if self.training:
                raise ValueError(
                    "GM-OT with teacher_source: cache needs the 'teacher_feats' data key "
                    "(--train_data_path_and_name_and_type "
                    "dump/teacher/<set>/feats.scp,teacher_feats,kaldi_ark; written by "
                    "python -m espnet_otreg.bin.dump_teacher)"
                )
            return None
        else:
            feats, lengths = teacher_feats, teacher_feats_lengths
        if feats.shape[-1] != self.teacher_dim:
            ids = list(utt_id or [])
            who = f" (utterances {ids[:4]}{' ...' if len(ids) > 4 else ''})" if ids else ""
            raise ValueError(
                f"teacher features have dim {feats.shape[-1]}{who}, but the model was "
                f"built with teacher_dim={self.teacher_dim}: the feature cache and the "
                "config disagree (re-run dump_teacher or fix model_conf.teacher_dim)"
            )
        return feats.to(text.device, torch.float32), lengths.to(text.device)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        teacher_feats: Optional[torch.Tensor] = None,
        teacher_feats_lengths: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """ASR loss + GM-OT terms; returns ``(loss, stats, weight)`` as ESPnet does.

        Args:
            speech, speech_lengths, text, text_lengths: as :class:`ESPnetASRModel`.
            teacher_feats: (B, M, D) cached teacher features (``teacher_source: cache``).
            kwargs: ``utt_id`` from the trainer, used in error messages.
        """
        batch_size = speech.shape[0]
        text = text.clone()
        text[text == -1] = self.ignore_id
        text = text[:, : text_lengths.max()]

        encoder_out, encoder_out_lens = self.encode(speech, speech_lengths)
        stats: Dict[str, Optional[torch.Tensor]] = {}
        loss_ctc, cer_ctc = self._calc_ctc_loss(encoder_out, encoder_out_lens, text, text_lengths)
        stats["loss_ctc"], stats["cer_ctc"] = loss_ctc.detach(), cer_ctc
        if self.ctc_weight < 1.0:
            loss_att, acc_att, cer_att, wer_att = self._calc_att_loss(
                encoder_out, encoder_out_lens, text, text_lengths
            )
            loss = self.ctc_weight * loss_ctc + (1 - self.ctc_weight) * loss_att
            stats.update(loss_att=loss_att.detach(), acc=acc_att, cer=cer_att, wer=wer_att)
        else:
            loss = loss_ctc
        # CTC cannot align a transcript longer than the encoder output: torch's CTC
        # gives inf, ESPnet zeroes it (zero_infinity). Count these utterances.
        stats["n_text_longer_than_encoder"] = (text_lengths > encoder_out_lens).sum().float()

        z = self.teacher_features(
            text, text_lengths, teacher_feats, teacher_feats_lengths, kwargs.get("utt_id")
        )
        if z is not None:
            loss = loss + self._gmot_terms(encoder_out, encoder_out_lens, text, text_lengths, *z, stats)

        stats["loss"] = loss.detach()
        loss, stats, weight = force_gatherable((loss, stats, batch_size), loss.device)
        return loss, stats, weight

    def _couple(self, encoder_out, encoder_out_lens, z, z_lens) -> Tuple[GMOTOutput, torch.Tensor]:
        """gamma* between the adapted frames and the teacher tokens; also the frame mask."""
        h_mask = lengths_to_mask(encoder_out_lens, encoder_out.size(1))
        z_mask = lengths_to_mask(z_lens, z.size(1))
        out = self.gmot(self.adapter(encoder_out), h_mask, z, z_mask)
        return out, h_mask

    def _gmot_terms(self, encoder_out, encoder_out_lens, text, text_lengths, z, z_lens, stats):
        out, h_mask = self._couple(encoder_out, encoder_out_lens, z, z_lens)
        n_valid = out.valid.sum().clamp_min(1)
        loss_gmot = out.fgw.sum() / n_valid
        loss_align = out.align.sum() / n_valid
        extra = self.beta * (loss_gmot + loss_align)
        stats.update(loss_gmot=loss_gmot.detach(), loss_align=loss_align.detach())
        if self.gmot.epsilon_schedule is not None:
            stats["ot_epsilon"] = torch.tensor(out.epsilon)
            if self.training:
                self.gmot.advance_schedule()
        if self.fusion is not None:
            fused = encoder_out
            if self.fusion_source == "teacher":  # W gamma* Z_L (our reading of the paper's)
                fused = fused + self.fusion.proj(out.frames_from_tokens.to(encoder_out.dtype))
            elif self.fusion_source == "acoustic":  # W gamma* Z~_L: no teacher feature
                rebuilt = project_to_frames(out.plan, out.tokens_from_frames)
                fused = fused + self.fusion.proj(rebuilt.to(encoder_out.dtype))
            fused = self.fusion.norm(fused)
            ctc = self.ctc if self.ctc_fused is None else self.ctc_fused
            loss_fused = ctc(fused, encoder_out_lens, text, text_lengths)
            extra = extra + self.lambda_ * loss_fused
            stats["loss_ctc_fused"] = loss_fused.detach()
        stats.update(coupling_stats(out.plan, h_mask, out.valid))
        res = out.result
        stats["ot_converged"] = (res.converged & out.valid).sum() / n_valid
        stats["ot_iters"] = (res.n_iter.float() * out.valid).sum() / n_valid
        # Utterances without a coupling (no teacher token, e.g. an empty transcript):
        # they still train on the ASR loss, and are counted here.
        stats["n_skipped_gmot"] = (~out.valid).sum().float()
        return extra

    @torch.no_grad()
    def coupling(self, speech, speech_lengths, text, text_lengths, teacher_feats=None,
                 teacher_feats_lengths=None, utt_id=None) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """gamma* for a batch, for inspection (``plot_coupling``): plan, frames, tokens."""
        encoder_out, encoder_out_lens = self.encode(speech, speech_lengths)
        z, z_lens = self.teacher_features(
            text, text_lengths, teacher_feats, teacher_feats_lengths, utt_id
        ) or (None, None)
        if z is None:
            raise ValueError("coupling() needs teacher features (teacher_feats or online)")
        out, _ = self._couple(encoder_out, encoder_out_lens, z, z_lens)
        return out.plan, encoder_out_lens, z_lens
