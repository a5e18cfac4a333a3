"""The GM-OT coupling between an acoustic and a linguistic graph, and its losses.

Each utterance gives two graphs (Lu et al., arXiv 2505.13079):

- acoustic: nodes ``h_i`` = adapted encoder frames (``i < N``), edges
  ``d_A(i, k) = 1 - cos(h_i, h_k)`` for ``|i - k| <= ws``;
- linguistic: nodes ``z_j`` = teacher token features (``j < M``), edges
  ``d_L(j, l) = 1 - cos(z_j, z_l)`` for ``|j - l| <= ws``.

The coupling ``gamma*`` (N x M) solves the entropic fused Gromov-Wasserstein problem::

    min_gamma (1 - alpha) <D_AL + rho * T, gamma>
              + alpha * sum_{ijkl} (d_A(i,k) - d_L(j,l))^2 gamma_ij gamma_kl
              + epsilon * KL(gamma | a b^T),     gamma 1 = a,  gamma^T 1 = b

with node cost ``D_AL(i, j) = 1 - cos(h_i, z_j)``, temporal prior
``T(i, j) = |i / N - j / M|`` (pushes gamma towards a monotonic, diagonal coupling)
and uniform marginals ``a = 1/N``, ``b = 1/M``. ``tau`` relaxes the marginals (KL, as
in the group's unbalanced follow-up, arXiv 2509.05609): silence frames need not be
matched. ``tau_frames`` / ``tau_tokens`` relax one side only: with ``tau_frames``
alone every token must be matched while frames (silence) may shed mass, the one-sided
reading of that follow-up; its exact formulation is not available to us, so the KL
relaxation of the frame marginal is our choice.

Special cases, all of them configs of the same class: ``alpha = 0`` is plain OT
alignment (OT-CAKT), ``alpha = 0, rho > 0`` is temporal-order-preserving OT
(TOT-CAKT), ``alpha > 0`` is GM-OT.

On top of ``gamma*`` (a constant for the gradients by default: envelope theorem):

- ``L_gmot``: the FGW distance ``(1 - alpha) <D_AL, gamma*> + alpha <L (x) gamma*,
  gamma*>``; its gradient pulls the adapted frames towards the tokens they are
  matched to and makes the two graphs' edges agree. The temporal prior and the
  entropy are constants for the gradient and are left out of the reported value.
- projection into the linguistic space: ``Z~_L = diag(1 / gamma^T 1) gamma^T H``
  (each token gets the gamma-weighted mean of its frames), and the alignment loss
  ``L_align = sum_j (1 - cos(Z~_j, z_j))`` (or the squared error, averaged over the
  feature dim), summed over the tokens like ESPnet sums its CTC loss over an
  utterance, so that ``beta`` weighs terms of the same scale.
- the reverse projection of the tokens onto the frames,
  ``Z^_A = diag(1 / gamma 1) gamma Z_L`` (N x D), which the model fuses with the
  acoustic frames for its second CTC loss.

What the paper states and what is our choice: the paper states the FGW objective,
the 1 - cos node and edge costs, the window ``ws``, the temporal cost on normalised
positions with weight ``rho``, the projection through gamma* and an alignment loss
with weight ``beta``. It does not state the solver settings, the alignment loss'
distance, or that gamma* is treated as a constant; those are our defaults here and
options in ``model_conf``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from espnet_otreg import ot


@dataclass
class GMOTOutput:
    """What :class:`GMOTAligner` computes for a padded batch (B pairs).

    ``valid`` marks pairs with at least one frame and one token; every per-pair value
    is 0 on the others.
    """

    plan: torch.Tensor  # (B, N, M) gamma*, zero on padding
    fgw: torch.Tensor  # (B,) L_gmot per pair
    align: torch.Tensor  # (B,) L_align per pair (sum over tokens)
    tokens_from_frames: torch.Tensor  # (B, M, D) Z~_L
    frames_from_tokens: torch.Tensor  # (B, N, D) Z^_A
    valid: torch.Tensor  # (B,) bool
    result: ot.FGWResult


class GMOTAligner(torch.nn.Module):
    """Computes gamma* and the GM-OT losses (no parameters of its own).

    Args:
        alpha: weight of the structure (Gromov-Wasserstein) term; paper: 0.02.
        rho: weight of the temporal prior ``|i/N - j/M|``.
        epsilon: entropic regularisation (costs are in [0, 2]).
        ws: edge window in positions on both graphs (None: complete graphs). With a
            window the structures are banded, ``(B, L, 2 ws + 1)``: an FGW outer step
            costs ``O(N ws M)`` instead of ``O(N^2 M)``.
        ws_frames, ws_tokens: a window for one graph only (None: ``ws``). ``ws: 5``
            spans 0.2 s of frames at 40 ms per frame but about 1.5 s of characters;
            the paper gives one ``ws``; separate windows are our option.
        window_mode: how FGW reads an absent edge (only with ``ws``): ``"zero"`` (an
            edge of cost 0, as the dense windowed matrix; the default) or
            ``"masked"`` (absent edges leave the GW sum). The paper does not say;
            see :func:`espnet_otreg.ot.fused_gromov_wasserstein`.
        prior: where the temporal prior enters: ``"inside"`` the linear term
            (default: ``(1 - alpha) <D_AL + rho T, gamma>``, so alpha also scales
            rho) or ``"outside"`` it (``(1 - alpha) <D_AL, gamma> + rho <T, gamma>``:
            an alpha ablation keeps the prior's strength). The paper writes the
            prior as a cost on positions without placing it; both are our readings.
        epsilon_mode: ``"absolute"`` (default: ``epsilon`` in cost units; 1 - cos
            costs lie in [0, 2]) or ``"relative"`` (``epsilon`` times each pair's
            largest linear cost, as OTReg scales its plan: the same sharpness for
            utterances whose costs are all near 1).
        tau: KL marginal relaxation of both marginals, in cost units like
            ``epsilon`` (None: balanced OT).
        tau_frames, tau_tokens: the relaxation of one marginal only (None: ``tau``),
            e.g. ``tau_frames: 1.0`` with ``tau`` None: frames relaxed, every token
            matched (one-sided unbalanced OT).
        edge_metric: ``"cosine"`` (paper) or ``"sqeuclidean"``/``"euclidean"``.
        align_loss: ``"cosine"`` (1 - cos) or ``"mse"``.
        max_iter, inner_max_iter, tol: FGW solver budget (see
            :func:`espnet_otreg.ot.fused_gromov_wasserstein`).
        grad: ``"envelope"`` (gamma* constant) or ``"autodiff"`` (through the
            iterations; memory grows with the iterations).
        early_stop: leave the solver's loops once every pair converged. That costs
            one host sync per convergence check (every 10 inner iterations and every
            outer one); False runs the full budget with no host sync at all.
    """

    def __init__(
        self,
        alpha: float = 0.02,
        rho: float = 0.5,
        epsilon: float = 0.1,
        ws: Optional[int] = 5,
        tau: Optional[float] = None,
        edge_metric: str = "cosine",
        align_loss: str = "cosine",
        max_iter: int = 10,
        inner_max_iter: int = 50,
        tol: float = 1e-4,
        grad: str = "envelope",
        early_stop: bool = True,
        window_mode: str = "zero",
        ws_frames: Optional[int] = None,
        ws_tokens: Optional[int] = None,
        prior: str = "inside",
        epsilon_mode: str = "absolute",
        tau_frames: Optional[float] = None,
        tau_tokens: Optional[float] = None,
    ):
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if rho < 0:
            raise ValueError(f"rho must be >= 0, got {rho}")
        if align_loss not in ("cosine", "mse"):
            raise ValueError(f"align_loss must be 'cosine' or 'mse', got {align_loss!r}")
        if grad not in ("envelope", "autodiff"):
            raise ValueError(f"grad (ot_grad) must be 'envelope' or 'autodiff', got {grad!r}")
        self.alpha, self.rho, self.epsilon, self.ws = alpha, rho, epsilon, ws
        self.edge_metric, self.align_loss = edge_metric, align_loss
        self.max_iter, self.inner_max_iter, self.tol = max_iter, inner_max_iter, tol
        if window_mode not in ("zero", "masked"):
            raise ValueError(f"window_mode must be 'zero' or 'masked', got {window_mode!r}")
        if prior not in ("inside", "outside"):
            raise ValueError(f"prior must be 'inside' or 'outside', got {prior!r}")
        if prior == "outside" and rho > 0 and alpha >= 1.0:
            raise ValueError("prior: outside needs alpha < 1 (the linear term carries it)")
        if epsilon_mode not in ("absolute", "relative"):
            raise ValueError(f"epsilon_mode must be 'absolute' or 'relative', got {epsilon_mode!r}")
        if ws is None and (ws_frames is not None or ws_tokens is not None):
            raise ValueError("ws_frames / ws_tokens refine a window: set ws too")
        self.grad = grad
        self.window_mode = window_mode
        self.early_stop = early_stop
        self.ws_frames = ws if ws_frames is None else ws_frames
        self.ws_tokens = ws if ws_tokens is None else ws_tokens
        self.prior, self.epsilon_mode = prior, epsilon_mode
        self.tau_frames = tau if tau_frames is None else tau_frames
        self.tau_tokens = tau if tau_tokens is None else tau_tokens
        ot.tau_pair((self.tau_frames, self.tau_tokens))  # a clear error now, not at step 1

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, rho={self.rho} ({self.prior}), epsilon={self.epsilon} "
            f"({self.epsilon_mode}), ws={self.ws_frames}/{self.ws_tokens}, "
            f"window_mode={self.window_mode}, tau={self.tau_frames}/{self.tau_tokens}, "
            f"max_iter={self.max_iter}x{self.inner_max_iter}"
        )

    def forward(
        self,
        h: torch.Tensor,
        h_mask: torch.Tensor,
        z: torch.Tensor,
        z_mask: torch.Tensor,
        epsilon: Optional[float] = None,
    ) -> GMOTOutput:
        """Couple frames ``h`` (B, N, D) with tokens ``z`` (B, M, D); masks are bool.
        ``epsilon`` overrides the configured one for this call (a schedule)."""
        valid = h_mask.any(1) & z_mask.any(1)
        # A pair with no token (or no frame) is solved as an empty problem: zero plan.
        h_mask = h_mask & valid[:, None]
        z_mask = z_mask & valid[:, None]

        node = ot.cosine(h, z, h_mask, z_mask)
        cost = node
        if self.rho:
            # (1 - alpha) multiplies the linear term in FGW: "outside" undoes it for T.
            w = self.rho if self.prior == "inside" else self.rho / (1.0 - self.alpha)
            cost = node + w * ot.temporal_prior(h_mask, z_mask)
        banded = self.ws is not None
        c_h = ot.structure(h, h_mask, self.edge_metric, window=self.ws_frames, banded=banded)
        c_z = ot.structure(z, z_mask, self.edge_metric, window=self.ws_tokens, banded=banded)
        scale = None
        if self.epsilon_mode == "relative":
            # Solving (C/s, Cx/sqrt(s), Cy/sqrt(s)) with epsilon is solving the pair's
            # own problem with epsilon * s (the square loss scales like C).
            scale = cost.detach().amax((1, 2)).clamp_min(1e-8)[:, None, None]
            cost, c_h, c_z = cost / scale, c_h / scale.sqrt(), c_z / scale.sqrt()
        res = ot.fused_gromov_wasserstein(
            cost, c_h, c_z, h_mask, z_mask,
            alpha=self.alpha, epsilon=self.epsilon if epsilon is None else epsilon,
            tau=(self.tau_frames, self.tau_tokens), max_iter=self.max_iter,
            inner_max_iter=self.inner_max_iter, tol=self.tol, grad=self.grad, early_stop=self.early_stop,
            ws=self.ws_frames if self.ws_frames == self.ws_tokens else (self.ws_frames, self.ws_tokens),
            window_mode=self.window_mode if banded else "zero",
        )
        plan = res.plan
        # FGW distance without the constant temporal prior, on the unscaled costs:
        # <D_AL, gamma> replaces <D_AL + rho T, gamma> in the linear part.
        if self.rho or scale is not None:
            linear = (node * plan.to(node.dtype)).sum((1, 2))
        else:
            linear = res.value_linear
        quadratic = res.value_quadratic if scale is None else res.value_quadratic * scale[:, 0, 0]
        fgw = (1.0 - self.alpha) * linear + self.alpha * quadratic

        # Projections in the plan's float32 (bf16/fp16 would flush its small entries).
        p = plan
        hp, zp = h.to(p.dtype), z.to(p.dtype)
        tokens_from_frames = p.transpose(1, 2) @ hp / p.sum(1).clamp_min(1e-12)[..., None]
        frames_from_tokens = p @ zp / p.sum(2).clamp_min(1e-12)[..., None]
        if self.align_loss == "cosine":
            err = 1.0 - torch.nn.functional.cosine_similarity(
                tokens_from_frames, zp, dim=-1, eps=1e-8
            )
        else:
            err = (tokens_from_frames - zp).pow(2).mean(-1)
        align = (err * z_mask).sum(1)
        return GMOTOutput(
            plan=plan,
            fgw=fgw * valid,
            align=align * valid,
            tokens_from_frames=tokens_from_frames,
            frames_from_tokens=frames_from_tokens,
            valid=valid,
            result=res,
        )


@torch.no_grad()
def coupling_stats(plan: torch.Tensor, h_mask: torch.Tensor, valid: torch.Tensor) -> dict:
    """TensorBoard figures of a batch of couplings (means over the valid pairs).

    - ``coupling_entropy``: entropy of gamma / sum(gamma) in nats (0 = one-to-one;
      ``log(N M)`` = uniform).
    - ``coupling_monotonic``: share of consecutive frames whose argmax token does not
      go back (1 = a monotonic alignment).
    """
    n = valid.sum().clamp_min(1)
    p = plan / plan.sum((1, 2), keepdim=True).clamp_min(1e-30)
    ent = -(p * torch.log(p.clamp_min(1e-30))).sum((1, 2))
    best = plan.argmax(-1)  # (B, N)
    step_ok = (best[:, 1:] >= best[:, :-1]) & h_mask[:, 1:] & valid[:, None]
    steps = (h_mask[:, 1:] & valid[:, None]).sum()
    return {
        "coupling_entropy": (ent * valid).sum() / n,
        "coupling_monotonic": step_ok.sum() / steps.clamp_min(1),
    }
