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

from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, Optional, Tuple

import torch

from espnet_otreg import ot
from espnet_otreg.ot import measures


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
    epsilon: float  # the entropic regularisation this batch was solved with


@dataclass(frozen=True)
class EpsilonSchedule:
    """epsilon from ``start`` to ``end`` geometrically over the first ``steps`` training
    steps, then ``end`` (start smooth, end sharp; our option, not the paper's)."""

    start: float
    end: float
    steps: int

    def __post_init__(self):
        if min(self.start, self.end) <= 0 or self.steps < 0:
            raise ValueError("epsilon_schedule needs start > 0, end > 0 and steps >= 0, got "
                             f"{dict(start=self.start, end=self.end, steps=self.steps)}")

    def at(self, step: int) -> float:
        t = min(step / max(float(self.steps), 1.0), 1.0)
        return float(self.start) * (float(self.end) / float(self.start)) ** t


@dataclass(frozen=True)
class GMOTConfig:
    """The coupling's options, validated once (see :class:`GMOTAligner` for each).

    The windows and the relaxations are pairs (frames, tokens), as the OT library takes
    them. :meth:`from_options` reads the flat keys of ``model_conf`` (``ws``,
    ``ws_frames``, ``ws_tokens``, ``tau``, ``tau_frames``, ``tau_tokens``, ...); a key
    that is not an option, or a value out of range, is an error that names it.
    """

    alpha: float = 0.02
    rho: float = 0.5
    epsilon: float = 0.1
    ws: Optional[Tuple[int, int]] = (5, 5)  # (frames, tokens); None: complete graphs
    tau: Tuple[Optional[float], Optional[float]] = (None, None)  # None: that side hard
    edge_metric: str = "cosine"
    align_loss: str = "cosine"
    max_iter: int = 10
    inner_max_iter: int = 50
    tol: float = 1e-4
    grad: str = "envelope"
    early_stop: bool = True
    window_mode: str = "zero"
    prior: str = "inside"
    epsilon_mode: str = "absolute"
    epsilon_schedule: Optional[EpsilonSchedule] = None

    #: model_conf names of the solver settings (ESPnet's ``ot_`` prefix) -> option names
    MODEL_CONF_NAMES = {"ot_max_iter": "max_iter", "ot_inner_max_iter": "inner_max_iter",
                        "ot_tol": "tol", "ot_grad": "grad", "ot_early_stop": "early_stop"}

    def __post_init__(self):
        choices = dict(edge_metric=("cosine", "sqeuclidean", "euclidean"),
                       align_loss=("cosine", "mse"), grad=("envelope", "autodiff"),
                       window_mode=("zero", "masked"), prior=("inside", "outside"),
                       epsilon_mode=("absolute", "relative"))
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key} must be one of {allowed}, got {getattr(self, key)!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.rho < 0:
            raise ValueError(f"rho must be >= 0, got {self.rho}")
        if not self.epsilon > 0:
            raise ValueError(f"epsilon must be > 0, got {self.epsilon}")
        if self.prior == "outside" and self.rho > 0 and self.alpha >= 1.0:
            raise ValueError("prior: outside needs alpha < 1 (the linear term carries it)")
        if self.ws is not None:
            for name, w in zip(("ws_frames", "ws_tokens"), self.ws):
                if isinstance(w, bool) or not isinstance(w, int) or w < 0:
                    raise ValueError(f"{name} (ws) must be a whole number of positions >= 0, "
                                     f"got {w!r}")
        ot.tau_pair(self.tau)  # a clear error now, not at step 1

    @classmethod
    def option_names(cls) -> Tuple[str, ...]:
        """Every flat option :meth:`from_options` takes."""
        pairs = ("ws", "tau")
        return tuple(f.name for f in fields(cls) if f.name not in pairs) + (
            "ws", "ws_frames", "ws_tokens", "tau", "tau_frames", "tau_tokens")

    @classmethod
    def from_options(cls, **options) -> "GMOTConfig":
        """From flat options: ``ws`` both windows, ``ws_frames`` / ``ws_tokens`` one
        (they refine a window: ``ws`` must be set); ``tau`` both relaxations,
        ``tau_frames`` / ``tau_tokens`` one; ``epsilon_schedule`` a dict."""
        unknown = sorted(set(options) - set(cls.option_names()))
        if unknown:
            raise ValueError(f"unknown GM-OT option(s) {unknown}; known: {sorted(cls.option_names())}")
        o = dict(options)
        default_ws = cls.__dataclass_fields__["ws"].default  # one default, the field's
        ws = o.pop("ws", None if default_ws is None else default_ws[0])
        ws_f, ws_t = o.pop("ws_frames", None), o.pop("ws_tokens", None)
        if ws is None and (ws_f is not None or ws_t is not None):
            raise ValueError("ws_frames / ws_tokens refine a window: set ws too")
        o["ws"] = None if ws is None else (ws if ws_f is None else ws_f, ws if ws_t is None else ws_t)
        tau, tau_f, tau_t = o.pop("tau", None), o.pop("tau_frames", None), o.pop("tau_tokens", None)
        o["tau"] = (tau if tau_f is None else tau_f, tau if tau_t is None else tau_t)
        sch = o.get("epsilon_schedule")
        if isinstance(sch, dict):
            missing = {"start", "end", "steps"} - set(sch)
            if missing or set(sch) - {"start", "end", "steps"}:
                raise ValueError(f"epsilon_schedule needs exactly start, end and steps, got {sch}")
            o["epsilon_schedule"] = EpsilonSchedule(**sch)
        return cls(**o)

    @classmethod
    def model_conf_keys(cls) -> Tuple[str, ...]:
        """The ``model_conf`` keys of the options (the solver settings spelt ``ot_*``)."""
        renamed = {v: k for k, v in cls.MODEL_CONF_NAMES.items()}
        return tuple(renamed.get(o, o) for o in cls.option_names())

    @classmethod
    def from_model_conf(cls, conf: Dict[str, Any]) -> "GMOTConfig":
        """From ``model_conf`` keys (the solver settings spelt ``ot_max_iter``, ...)."""
        return cls.from_options(**{cls.MODEL_CONF_NAMES.get(k, k): v for k, v in conf.items()})

    def options(self) -> Dict[str, Any]:
        """The flat options that :meth:`from_options` turns back into this config."""
        o = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("ws", "tau")}
        if o["epsilon_schedule"] is not None:
            o["epsilon_schedule"] = asdict(o["epsilon_schedule"])
        if self.ws is None or self.ws[0] == self.ws[1]:
            o["ws"] = None if self.ws is None else self.ws[0]
        else:
            o.update(ws=self.ws[0], ws_frames=self.ws[0], ws_tokens=self.ws[1])
        o.update(tau_frames=self.tau[0], tau_tokens=self.tau[1])
        return o

    def replace(self, **changes) -> "GMOTConfig":
        """A copy with some flat options changed, validated like a new one. ``ws`` sets
        both windows, ``tau`` both relaxations (any one-sided value is dropped) and
        ``epsilon`` the regularisation (a schedule is dropped), so that no change can be
        silently overridden by another key."""
        o = self.options()
        if "ws" in changes:
            o.pop("ws_frames", None), o.pop("ws_tokens", None)
        if "tau" in changes:
            o.pop("tau_frames"), o.pop("tau_tokens")
        if "epsilon" in changes and "epsilon_schedule" not in changes:
            o["epsilon_schedule"] = None
        o.update(changes)
        return self.from_options(**o)


class GMOTAligner(torch.nn.Module):
    """Computes gamma* and the GM-OT losses (no parameters of its own).

    Built from a :class:`GMOTConfig`, or from its flat options
    (``GMOTAligner(alpha=0.02, ws=5)``); :meth:`replace` derives a changed copy.

    Options:
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
        epsilon_schedule: None, or ``{start, end, steps}`` (:class:`EpsilonSchedule`);
            the aligner counts the training steps in its buffer ``step`` (kept by
            checkpoints, so a resumed run continues the schedule).
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

    def __init__(self, config: Optional[GMOTConfig] = None, **options):
        super().__init__()
        if config is not None and options:
            raise TypeError("GMOTAligner takes a GMOTConfig or its options, not both")
        self.config = config if config is not None else GMOTConfig.from_options(**options)
        if self.config.epsilon_schedule is not None:  # training steps so far
            self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self._step: Optional[int] = None  # Python mirror of the buffer (no per-step sync)

    def replace(self, **changes) -> "GMOTAligner":
        """A new aligner with some options changed (:meth:`GMOTConfig.replace`: a key
        that is not an option is an error); it continues this one's step count."""
        new = GMOTAligner(self.config.replace(**changes))
        if hasattr(self, "step") and hasattr(new, "step"):
            new.step.copy_(self.step)
        return new

    # Read-only views of the config under the option names (the other fields are added
    # below the class): the pairs one side at a time, and ws as given (one window for
    # both graphs, or the pair when they differ).
    ws = property(lambda self: None if self.config.ws is None else (
        self.config.ws[0] if self.config.ws[0] == self.config.ws[1] else self.config.ws))
    ws_frames = property(lambda self: None if self.config.ws is None else self.config.ws[0])
    ws_tokens = property(lambda self: None if self.config.ws is None else self.config.ws[1])
    tau_frames = property(lambda self: self.config.tau[0])
    tau_tokens = property(lambda self: self.config.tau[1])

    def scheduled_epsilon(self) -> float:
        """epsilon at the current training step (the schedule's), else the configured one."""
        sch = self.config.epsilon_schedule
        if sch is None:
            return self.config.epsilon
        if self._step is None:  # read the checkpointed count once (one host sync)
            self._step = int(self.step)
        return sch.at(self._step)

    def advance_schedule(self) -> None:
        """One training step done (no-op without a schedule)."""
        if self.config.epsilon_schedule is not None:
            self.scheduled_epsilon()  # the mirror is read before it moves
            self._step += 1
            self.step += 1

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"alpha={c.alpha}, rho={c.rho} ({c.prior}), epsilon={c.epsilon} "
            f"({c.epsilon_mode}), ws={self.ws_frames}/{self.ws_tokens}, "
            f"window_mode={c.window_mode}, tau={self.tau_frames}/{self.tau_tokens}, "
            f"max_iter={c.max_iter}x{c.inner_max_iter}"
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
        ``epsilon`` overrides the configured (or scheduled) one for this call."""
        c = self.config
        if epsilon is None:
            epsilon = self.scheduled_epsilon()
        valid = h_mask.any(1) & z_mask.any(1)
        # A pair with no token (or no frame) is solved as an empty problem: zero plan.
        h_mask = h_mask & valid[:, None]
        z_mask = z_mask & valid[:, None]

        node = ot.cosine(h, z, h_mask, z_mask)
        cost = node
        if c.rho:
            # (1 - alpha) multiplies the linear term in FGW: "outside" undoes it for T.
            w = c.rho if c.prior == "inside" else c.rho / (1.0 - c.alpha)
            cost = node + w * ot.temporal_prior(h_mask, z_mask)
        banded = c.ws is not None
        c_h = ot.structure(h, h_mask, c.edge_metric, window=self.ws_frames, banded=banded)
        c_z = ot.structure(z, z_mask, c.edge_metric, window=self.ws_tokens, banded=banded)
        scale = None
        if c.epsilon_mode == "relative":
            # Solving (C/s, Cx/sqrt(s), Cy/sqrt(s)) with epsilon is solving the pair's
            # own problem with epsilon * s (the square loss scales like C).
            scale = ot.max_cost_scale(cost)
            cost, c_h, c_z = cost / scale, c_h / scale.sqrt(), c_z / scale.sqrt()
        res = ot.fused_gromov_wasserstein(
            cost, c_h, c_z, h_mask, z_mask,
            alpha=c.alpha, epsilon=epsilon, tau=c.tau, max_iter=c.max_iter,
            inner_max_iter=c.inner_max_iter, tol=c.tol, grad=c.grad, early_stop=c.early_stop,
            ws=c.ws,  # (frames, tokens), as the OT library takes it
            window_mode=c.window_mode if banded else "zero",
        )
        plan = res.plan
        # FGW distance without the constant temporal prior, on the unscaled costs:
        # <D_AL, gamma> replaces <D_AL + rho T, gamma> in the linear part.
        if c.rho or scale is not None:
            linear = (node * plan.to(node.dtype)).sum((1, 2))
        else:
            linear = res.value_linear
        quadratic = res.value_quadratic if scale is None else res.value_quadratic * scale[:, 0, 0]
        fgw = (1.0 - c.alpha) * linear + c.alpha * quadratic

        # Projections in the plan's float32 (bf16/fp16 would flush its small entries).
        zp = z.to(plan.dtype)
        tokens_from_frames = project_to_tokens(plan, h.to(plan.dtype))
        frames_from_tokens = project_to_frames(plan, zp)
        if c.align_loss == "cosine":
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
            epsilon=epsilon,
        )


def project_to_tokens(plan: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """``diag(1 / gamma^T 1) gamma^T X``: each token gets the gamma-weighted mean of the
    frames' features, ``(B, M, D)`` from ``(B, N, D)``."""
    return plan.transpose(1, 2) @ frames / plan.sum(1).clamp_min(1e-12)[..., None]


def project_to_frames(plan: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``diag(1 / gamma 1) gamma Y``: each frame gets the gamma-weighted mean of the
    tokens' features, ``(B, N, D)`` from ``(B, M, D)``."""
    return plan @ tokens / plan.sum(2).clamp_min(1e-12)[..., None]


for _field in fields(GMOTConfig):
    if _field.name not in ("ws", "tau"):
        setattr(GMOTAligner, _field.name,
                property(lambda self, _n=_field.name: getattr(self.config, _n)))
del _field


@torch.no_grad()
def coupling_stats(plan: torch.Tensor, h_mask: torch.Tensor, valid: torch.Tensor) -> dict:
    """TensorBoard figures of a batch of couplings (means over the valid pairs).

    - ``coupling_entropy``: entropy of gamma / sum(gamma) in nats (0 = one-to-one;
      ``log(N M)`` = uniform).
    - ``coupling_monotonic``: share of consecutive frames whose argmax token does not
      go back (1 = a monotonic alignment).
    """
    n = valid.sum().clamp_min(1)
    ok, steps = measures.monotonic_steps(plan, h_mask & valid[:, None])
    return {
        "coupling_entropy": (measures.plan_entropy(plan) * valid).sum() / n,
        "coupling_monotonic": ok.sum() / steps.sum().clamp_min(1),
    }
