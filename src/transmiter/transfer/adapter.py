"""The TransMiter logit adapter (``LogitAdjustHead_ver3`` in the reference, re-written).

For each logit row l in R^K (C task classes first, then K - C auxiliary names):

    mu, sigma = mean(l), std(l, unbiased)              # over all K logits
    z   = (l - mu) / (sigma + eps)                     # standardise, eps = 1e-6
    h   = W z                                          # W: proj_dim x K, orthonormal columns
    h   = h + MLP_i(h)    for i in 1..depth            # LN -> Linear(d, r d) -> GELU -> Dropout -> Linear(r d, d)
    u   = W^T h                                        # pull back with the transpose
    out = u * (sigma + eps) + mu                       # de-standardise with the same sample's stats

The last Linear of every block is zero-initialised, so a fresh adapter is the identity on logits
whatever W is. The forward returns all K outputs; callers take the first C (or the base columns).

Projection forms (``projection=``):
    * ``"orthogonal"`` - W is trainable and kept orthogonal by PyTorch's own
      ``torch.nn.utils.parametrizations.orthogonal`` with dynamic trivialisation and the matrix-exp
      map, also when proj_dim > K (the Householder map PyTorch picks there by default reads the
      sign of a parameter through ``.int()``, so AdamW weight decay zeroes columns of W). Initial W:
      Haar-random (QR of a Gaussian matrix with the sign fix), drawn from ``seed``. Used for fitting.
    * ``"frozen"`` - W is a plain buffer (no parametrisation, no gradient). Produced by transfer.
    * ``"free"`` - W is a plain trainable ``nn.Parameter`` (orthogonality not enforced).
    ``adapter.set_projection(form)`` converts in place, preserving the current W.

Precision: the forward runs in the parameters' dtype with autocast disabled (the adapter is tiny
and its identity path is precision-sensitive); its output has that dtype.

Standardisation detail: the reference adds eps on the way in only and de-standardises with sigma;
here both directions use sigma + eps so that the adapter is exactly invertible around the identity
(relative difference 1e-6 / sigma, immaterial for logits with sigma of order 1-10).

Tensors for artifacts: ``export_tensors()`` gives canonical names ("projection" for W plus the
MLP parameters); ``LogitAdapter.from_tensors(tensors, config, projection=...)`` rebuilds.

    adapter = LogitAdapter(K=1024, seed=0)             # 9.44M parameters at K = proj_dim = 1024
    LogitAdapter(K, seed=0, dtype=torch.float64)       # build in float64 (W orthogonal to fp64 precision)
    LogitAdapter(K, random_init=False)                 # W = identity placeholder (tensors loaded next)
    out = adapter(zs_logits)[:, :C]
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrizations, parametrize

__all__ = [
    "PROJECTION_FORMS",
    "AdapterConfig",
    "LogitAdapter",
    "destandardize_logits",
    "haar_orthogonal",
    "standardize_logits",
]

PROJECTION_FORMS = ("orthogonal", "frozen", "free")
PROJECTION_KEY = "projection"


def standardize_logits(logits: Tensor, eps: float = 1e-6) -> tuple[Tensor, Tensor, Tensor]:
    """Per-row standardisation over the last dim. Returns (z, mu, scale) with scale = std + eps."""
    mu = logits.mean(dim=-1, keepdim=True)
    scale = logits.std(dim=-1, keepdim=True, unbiased=True) + eps
    return (logits - mu) / scale, mu, scale


def destandardize_logits(z: Tensor, mu: Tensor, scale: Tensor) -> Tensor:
    return z * scale + mu


def haar_orthogonal(
    rows: int, cols: int, *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """A Haar-random ``rows x cols`` matrix with orthonormal columns (rows >= cols)."""
    if rows < cols:
        raise ValueError(f"need rows >= cols for orthonormal columns, got {rows} x {cols}")
    g = torch.randn(rows, cols, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(g)
    d = torch.sign(torch.diagonal(r))
    d[d == 0] = 1.0
    return (q * d.unsqueeze(0)).to(dtype)


@dataclass(frozen=True)
class AdapterConfig:
    K: int
    proj_dim: int
    mlp_ratio: int = 4
    depth: int = 1
    dropout: float = 0.0
    eps: float = 1e-6

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> AdapterConfig:
        return cls(
            K=int(d["K"]),
            proj_dim=int(d["proj_dim"]),
            mlp_ratio=int(d.get("mlp_ratio", 4)),
            depth=int(d.get("depth", 1)),
            dropout=float(d.get("dropout", 0.0)),
            eps=float(d.get("eps", 1e-6)),
        )


class ResidualMLPBlock(nn.Module):
    """h -> h + fc2(drop(gelu(fc1(norm(h))))); fc1 Xavier-uniform (bias 0), fc2 all zeros."""

    def __init__(self, dim: int, mlp_ratio: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        hidden = dim * mlp_ratio
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, dim)
        nn.init.xavier_uniform_(self.fc1.weight)
        nn.init.zeros_(self.fc1.bias)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.fc2(self.drop(self.act(self.fc1(self.norm(h)))))


@contextlib.contextmanager
def _seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Fork the global RNG(s) and seed them, so PyTorch-internal draws are reproducible."""
    if seed is None:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class LogitAdapter(nn.Module):
    """Residual logit adapter with an orthogonal push / transpose pull (see module docstring)."""

    def __init__(
        self,
        K: int,
        proj_dim: int | None = None,
        mlp_ratio: int = 4,
        depth: int = 1,
        dropout: float = 0.0,
        *,
        projection: str = "orthogonal",
        seed: int | None = 0,
        eps: float = 1e-6,
        dtype: torch.dtype = torch.float32,
        random_init: bool = True,
    ) -> None:
        super().__init__()
        proj_dim = K if proj_dim is None else int(proj_dim)
        if proj_dim < K:
            raise ValueError(f"proj_dim must be >= K so that W^T W = I (got proj_dim={proj_dim}, K={K})")
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        self.config = AdapterConfig(
            K=int(K),
            proj_dim=proj_dim,
            mlp_ratio=int(mlp_ratio),
            depth=int(depth),
            dropout=float(dropout),
            eps=float(eps),
        )
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        with _seeded(seed, torch.device("cpu")):
            self.push = nn.Linear(K, proj_dim, bias=False, dtype=dtype)
            # random_init=False (from_tensors): W is overwritten at once, so skip the fp64 QR of the Haar
            # draw (most of the cost of loading an artifact at K = 1024); the identity is a valid placeholder
            with torch.no_grad():
                if random_init:
                    self.push.weight.copy_(haar_orthogonal(proj_dim, K, generator=gen, dtype=dtype))
                else:
                    self.push.weight.copy_(torch.eye(proj_dim, K, dtype=dtype))
            self.blocks = nn.ModuleList(
                [ResidualMLPBlock(proj_dim, mlp_ratio, dropout) for _ in range(depth)]
            ).to(dtype)
        self._projection = "free"
        self._seed = seed
        self.set_projection(projection)

    # ---------------------------------------------------------------- properties
    @property
    def K(self) -> int:
        return self.config.K

    @property
    def proj_dim(self) -> int:
        return self.config.proj_dim

    @property
    def projection(self) -> str:
        """Current projection form: "orthogonal", "frozen" or "free"."""
        return self._projection

    @property
    def W(self) -> Tensor:
        """The projection matrix (proj_dim x K). Through the parametrisation if orthogonal."""
        return self.push.weight

    # ---------------------------------------------------------------- projection forms
    def set_projection(self, form: str) -> LogitAdapter:
        """Convert the projection to ``form`` in place, keeping the current value of W."""
        if form not in PROJECTION_FORMS:
            raise ValueError(f"projection must be one of {PROJECTION_FORMS}, got {form!r}")
        if form == self._projection:
            return self
        with torch.no_grad():
            current = self.push.weight.detach().clone()
        # strip any existing form
        if parametrize.is_parametrized(self.push, "weight"):
            parametrize.remove_parametrizations(self.push, "weight", leave_parametrized=False)
        if hasattr(self.push, "weight"):  # a parameter (free) or a buffer (frozen)
            delattr(self.push, "weight")
        if form == "frozen":
            self.push.register_buffer("weight", current)
        else:
            self.push.weight = nn.Parameter(current)
            if form == "orthogonal":
                # right_inverse keeps an (already) orthogonal W exactly; the non-square completion
                # draws from the global RNG, hence the seeded fork.
                # matrix_exp also for a non-square W: PyTorch's default there, "householder", reads
                # the sign of X's diagonal through .int(), so AdamW weight decay (-1 -> -0.999)
                # zeroes columns of W.
                with _seeded(self._seed, current.device):
                    parametrizations.orthogonal(self.push, "weight", orthogonal_map="matrix_exp")
        self._projection = form
        return self

    # ---------------------------------------------------------------- pickling
    # PyTorch pickles a parametrised module only through its state_dict, but Lightning's ddp_spawn and
    # multiprocessing pickle the whole module: the adapter travels as its configuration, form and
    # state_dict and is rebuilt from them. keep_vars=True hands pickle the adapter's own tensors, no
    # temporaries: under torch.multiprocessing a pickled CPU tensor travels as a shared-memory file
    # descriptor, which must stay open until the child has read it.
    def __reduce__(self):
        state = self.state_dict(keep_vars=True)
        return (
            LogitAdapter._unpickle,
            (self.config.to_dict(), self._projection, self._seed, self.training, state),
        )

    @classmethod
    def _unpickle(
        cls, config: Mapping, projection: str, seed: int | None, training: bool, state: Mapping[str, Tensor]
    ) -> LogitAdapter:
        """The adapter `__reduce__` describes: same form, tensors, trainable flags, mode and seed."""
        first = next(iter(state.values()))
        adapter = cls.blank(AdapterConfig.from_dict(config), dtype=first.dtype).to(first.device)
        adapter.set_projection(projection)  # its placeholder values are overwritten next
        adapter.load_state_dict(state)
        for name, param in adapter.named_parameters():
            param.requires_grad_(state[name].requires_grad)
        adapter._seed = seed  # what later conversions of the form draw from
        return adapter.train(training)

    # ---------------------------------------------------------------- forward
    def standardize(self, logits: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return standardize_logits(logits, self.config.eps)

    def latent(self, logits: Tensor, W: Tensor | None = None) -> Tensor:
        """Z = standardize(l) W^T, the latent right before the MLP (used by Procrustes)."""
        W = self.W if W is None else W
        z, _, _ = self.standardize(logits.to(W.dtype))
        return z @ W.T

    def forward(self, logits: Tensor) -> Tensor:
        if logits.shape[-1] != self.K:
            raise ValueError(
                f"adapter expects K={self.K} logits per row, got shape {tuple(logits.shape)}; the head "
                f"must hold the C task classes followed by the K-C auxiliary names"
            )
        # Always in the parameters' dtype (fp32), also under bf16/fp16 autocast: the identity path
        # W^T W z would lose ~0.4 % relative precision in bf16, and the adapter is ~21 MFLOPs/row.
        with torch.autocast(device_type=logits.device.type, enabled=False):
            W = self.W  # evaluate the parametrisation once per forward
            z, mu, scale = self.standardize(logits.to(W.dtype))
            h = nn.functional.linear(z, W)
            for block in self.blocks:
                h = block(h)
            u = h @ W
            return destandardize_logits(u, mu, scale)

    # ---------------------------------------------------------------- tensors in / out
    def export_tensors(self) -> dict[str, Tensor]:
        """Canonical, form-independent tensors: "projection" (W) + block parameters (detached)."""
        out = {PROJECTION_KEY: self.W.detach().clone().contiguous()}
        for name, p in self.blocks.named_parameters():
            out[f"blocks.{name}"] = p.detach().clone().contiguous()
        return out

    @classmethod
    def blank(cls, config: AdapterConfig, *, dtype: torch.dtype = torch.float32) -> LogitAdapter:
        """An adapter of `config` in the free form with W = identity placeholder, for tensors loaded next
        (seeded init: leaves the global RNG untouched)."""
        return cls(
            config.K,
            config.proj_dim,
            config.mlp_ratio,
            config.depth,
            config.dropout,
            projection="free",
            seed=0,
            eps=config.eps,
            dtype=dtype,
            random_init=False,
        )

    @classmethod
    def from_tensors(
        cls, tensors: Mapping[str, Tensor], config: AdapterConfig | Mapping, *, projection: str = "frozen"
    ) -> LogitAdapter:
        cfg = config if isinstance(config, AdapterConfig) else AdapterConfig.from_dict(config)
        W = tensors[PROJECTION_KEY]
        adapter = cls.blank(cfg, dtype=W.dtype if W.is_floating_point() else torch.float32)
        adapter.load_tensors(tensors)
        return adapter.set_projection(projection)

    def load_tensors(self, tensors: Mapping[str, Tensor]) -> None:
        """Copy canonical tensors (see :meth:`export_tensors`) into this adapter (any form)."""
        expected = set(self.export_tensors_names())
        missing = sorted(expected - set(tensors))
        unexpected = sorted(set(tensors) - expected)
        if missing or unexpected:
            raise ValueError(f"adapter tensors mismatch: missing {missing}, unexpected {unexpected}")
        form = self._projection
        self.set_projection("free")
        with torch.no_grad():
            W = tensors[PROJECTION_KEY]
            if tuple(W.shape) != tuple(self.push.weight.shape):
                raise ValueError(
                    f"projection shape {tuple(W.shape)} != expected {tuple(self.push.weight.shape)}"
                )
            self.push.weight.copy_(W)
            params = dict(self.blocks.named_parameters())
            for name, p in params.items():
                src = tensors[f"blocks.{name}"]
                if tuple(src.shape) != tuple(p.shape):
                    raise ValueError(f"blocks.{name}: shape {tuple(src.shape)} != {tuple(p.shape)}")
                p.copy_(src)
        self.set_projection(form)

    def export_tensors_names(self) -> list[str]:
        return [PROJECTION_KEY] + [f"blocks.{n}" for n, _ in self.blocks.named_parameters()]

    def clone(self, *, projection: str | None = None) -> LogitAdapter:
        """An independent copy (normal tensors, same device/dtype) in the given projection form."""
        W = self.W
        new = LogitAdapter.from_tensors(
            self.export_tensors(), self.config, projection=projection or self.projection
        )
        return new.to(device=W.device, dtype=W.dtype)

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"K={c.K}, proj_dim={c.proj_dim}, mlp_ratio={c.mlp_ratio}, depth={c.depth}, "
            f"dropout={c.dropout}, projection={self._projection!r}"
        )
