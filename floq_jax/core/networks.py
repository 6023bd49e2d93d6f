"""Flax modules: MLP and residual trunks, ensembles, value heads, and floq's velocity field.

Shapes use B for the batch, E for ensemble members, O for the observation dim, A for the action dim.
Every Dense layer has an explicit name (``hidden_<i>`` and ``output``) so that callers can address
"the trunk" and "the last layer" by parameter path (used to freeze features in the plasticity
experiments).
"""

import dataclasses
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any


def default_init(scale: float = 1.0):
    """Kernel initialiser used throughout (variance scaling, fan_avg, uniform), as in FQL."""
    return nn.initializers.variance_scaling(scale, 'fan_avg', 'uniform')


class MLP(nn.Module):
    """Plain MLP: Dense -> activation -> (LayerNorm) for each hidden layer, then a linear output.

    Attributes:
      hidden_dims: widths of the hidden layers.
      output_dim: width of the final (linear) layer.
      layer_norm: apply LayerNorm after each hidden activation (GELU then LayerNorm, as published).
      dtype: computation dtype of the matmuls (params stay float32).

    __call__(x: (..., D)) -> (..., output_dim); with ``return_features=True`` also returns the last
    hidden layer's activations (..., hidden_dims[-1]).
    """

    hidden_dims: Sequence[int]
    output_dim: int
    layer_norm: bool = False
    activation: Callable = nn.gelu
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, return_features: bool = False):
        for i, width in enumerate(self.hidden_dims):
            x = nn.Dense(width, kernel_init=default_init(), dtype=self.dtype, name=f'hidden_{i}')(x)
            x = self.activation(x)
            if self.layer_norm:
                x = nn.LayerNorm(dtype=self.dtype, name=f'norm_{i}')(x)
        features = x
        out = nn.Dense(self.output_dim, kernel_init=default_init(), dtype=self.dtype, name='output')(x)
        out = out.astype(jnp.float32)
        return (out, features.astype(jnp.float32)) if return_features else out


class ResMLP(nn.Module):
    """Residual MLP: an input projection, ``num_blocks`` residual blocks of ``block_depth`` layers, a
    linear output.  Each block is ``x + MLP-block(x)`` with GELU then LayerNorm after every layer.

    __call__(x: (..., D)) -> (..., output_dim)  (and features (..., width) if asked).
    """

    width: int
    num_blocks: int
    block_depth: int
    output_dim: int
    layer_norm: bool = True
    activation: Callable = nn.gelu
    dtype: Dtype = jnp.float32

    def _dense_act(self, x, name):
        x = nn.Dense(self.width, kernel_init=default_init(), dtype=self.dtype, name=f'hidden_{name}')(x)
        x = self.activation(x)
        if self.layer_norm:
            x = nn.LayerNorm(dtype=self.dtype, name=f'norm_{name}')(x)
        return x

    @nn.compact
    def __call__(self, x, return_features: bool = False):
        x = self._dense_act(x, 'in')
        for b in range(self.num_blocks):
            h = x
            for d in range(self.block_depth):
                h = self._dense_act(h, f'{b}_{d}')
            x = x + h
        features = x
        out = nn.Dense(self.output_dim, kernel_init=default_init(), dtype=self.dtype, name='output')(x)
        out = out.astype(jnp.float32)
        return (out, features.astype(jnp.float32)) if return_features else out


@dataclasses.dataclass(frozen=True)
class TrunkSpec:
    """Architecture of a critic trunk (hashable, so it can live in static config).

    Plain MLP: ``hidden_dims``.  Residual (``use_resnet``): ``num_blocks`` blocks of ``block_depth``
    layers of width ``width``.
    """

    hidden_dims: tuple = (512, 512, 512, 512)
    layer_norm: bool = True
    use_resnet: bool = False
    width: int = 512
    num_blocks: int = 2
    block_depth: int = 2


class Trunk(nn.Module):
    """One critic network built from a :class:`TrunkSpec`: (..., D) -> ((..., output_dim), features)."""

    spec: TrunkSpec
    output_dim: int = 1
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        s = self.spec
        if s.use_resnet:
            net = ResMLP(s.width, s.num_blocks, s.block_depth, self.output_dim, s.layer_norm,
                         dtype=self.dtype, name='resmlp')
        else:
            net = MLP(tuple(s.hidden_dims), self.output_dim, s.layer_norm, dtype=self.dtype, name='mlp')
        return net(x, return_features=True)


def ensemble(module_cls, num_members: int, in_axes=None):
    """``nn.vmap`` of ``module_cls`` over a leading ensemble axis with independent parameters."""
    return nn.vmap(
        module_cls,
        variable_axes={'params': 0},
        split_rngs={'params': True},
        in_axes=in_axes,
        out_axes=0,
        axis_size=num_members,
    )


MEMBERWISE_MIN_WORK = 2 ** 18  # rows x widest layer from which 'auto' runs members one by one (CPU only)


def use_memberwise(mode: str, rows: int, spec: TrunkSpec) -> bool:
    """Whether ``ensemble_apply`` mode 'auto' | 'memberwise' | 'vmap' runs the members one by one for ``rows`` rows.

    'auto': on the CPU backend when rows x the trunk's widest layer >= ``MEMBERWISE_MIN_WORK`` (member by member
    wins on large trunks and loses on small ones: the measurements are in docs/benchmark.md, "The measurements
    behind the code's defaults"). GPU/TPU: vmap.
    """
    if mode not in ('auto', 'memberwise', 'vmap'):
        raise ValueError(f"ensemble_apply must be 'auto', 'memberwise' or 'vmap', got {mode!r}")
    if mode != 'auto':
        return mode == 'memberwise'
    width = spec.width if spec.use_resnet else max(spec.hidden_dims)
    return jax.default_backend() == 'cpu' and rows * width >= MEMBERWISE_MIN_WORK


def ensemble_trunks(parent: nn.Module, spec: TrunkSpec, num_members: int, x, shared_input: bool, dtype,
                    mode: str = 'auto'):
    """``num_members`` independent :class:`Trunk` s (output dim 1) under ``parent``'s submodule ``'ensemble'``,
    params stacked on a leading axis E (the ``nn.vmap`` layout either way).

    x: (B, D) fed to every member if ``shared_input``, else (E, B, D) -> (out (E, B, 1), features (E, B, H)).

    ``mode`` (see :func:`use_memberwise`): 'memberwise' means, outside initialisation, run the E members as E plain networks on slices of the stacked
    params and stack the results, instead of one vmapped network (same params, same values). XLA:CPU runs a
    batched (vmapped) matmul slower than the same matmuls one by one: the 4x512 forward over 2 x 2048 rows
    took 159 vs 119 ms in a standalone paired timing (215 vs 120 ms in ``experiments/benchmark.py``'s profile rows
    ``mlp_matmuls_*``, under load); on GPU/TPU either is fine.  Must be called from a compact method of ``parent``.
    """
    net = ensemble(Trunk, num_members, in_axes=None if shared_input else 0)(spec, 1, dtype, parent=parent,
                                                                             name='ensemble')
    if parent.is_initializing() or not use_memberwise(mode, x.shape[-2], spec):
        return net(x)
    params = parent.variables['params']['ensemble']
    member = Trunk(spec, 1, dtype, parent=None)
    outs = [member.apply({'params': jax.tree_util.tree_map(lambda p, e=e: p[e], params)},
                         x if shared_input else x[e]) for e in range(num_members)]
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *outs)


# --------------------------------------------------------------------------- embeddings of z and t


HL_GAUSS_CLIP_SIGMAS = 3.0  # hl_gauss_embedding clips z to this many sigmas outside the support


def hl_gauss_support(q_min: float, q_max: float, num_bins: int) -> jax.Array:
    """The ``num_bins`` support points spanning [q_min, q_max] (bin edges of num_bins - 1 bins)."""
    return q_min + jnp.arange(num_bins, dtype=jnp.float32) * (q_max - q_min) / (num_bins - 1)


def hl_gauss_embedding(z: jax.Array, q_min: float, q_max: float, num_bins: int = 51,
                       sigma_bins: float = 16.0) -> jax.Array:
    """HL-Gauss embedding of scalars z: probabilities of N(z, sigma^2) over the bins between the
    ``num_bins`` support points on [q_min, q_max], normalised to sum to one.

    sigma = sigma_bins * bin width.  z: (...,) -> (..., num_bins - 1).  The published formula (floq's
    ``to_probs``) for z in [q_min - 3 sigma, q_max + 3 sigma]; z beyond is clipped to that band, so the
    embedding stays finite far outside the support (where every bin's mass underflows to 0 and the
    published formula gives 0/0; in float32 from about 5.5 sigma out, with precision lost before that).
    """
    support = hl_gauss_support(q_min, q_max, num_bins)
    sigma = sigma_bins * (support[1] - support[0])
    z = jnp.clip(z, q_min - HL_GAUSS_CLIP_SIGMAS * sigma, q_max + HL_GAUSS_CLIP_SIGMAS * sigma)
    cdf = jax.scipy.special.erf((support - z[..., None]) / (jnp.sqrt(2.0) * sigma))
    bin_mass = cdf[..., 1:] - cdf[..., :-1]
    total = cdf[..., -1:] - cdf[..., :1]
    return bin_mass / total


def time_embedding(t: jax.Array, kind: str = 'cos', dim: int = 64) -> jax.Array:
    """Embedding of flow times t: (...,) -> (..., F).

    kind='cos': the single feature cos(t) (what the published floq code feeds; F = 1).
    kind='raw': t itself (F = 1).
    kind='fourier': [cos(pi k t), sin(pi k t)] for k = 1..dim/2 (F = dim).
    """
    t = t[..., None].astype(jnp.float32)
    if kind == 'cos':
        return jnp.cos(t)
    if kind == 'raw':
        return t
    if kind == 'fourier':
        freqs = jnp.pi * jnp.arange(1, dim // 2 + 1, dtype=jnp.float32)
        return jnp.concatenate([jnp.cos(freqs * t), jnp.sin(freqs * t)], axis=-1)
    raise ValueError(f"time_embedding kind must be 'cos', 'raw' or 'fourier', got {kind!r}")


# --------------------------------------------------------------------------------- critics, actors


class EnsembleValue(nn.Module):
    """Ensemble of scalar critics Q(s, a): (B, O), (B, A) -> (E, B).

    ``trunk`` is a :class:`TrunkSpec` (plain MLP or ResMLP).
    With ``return_features=True`` also returns the penultimate features (E, B, H).
    """

    trunk: TrunkSpec
    num_ensembles: int = 2
    dtype: Dtype = jnp.float32
    ensemble_apply: str = 'auto'  # 'auto' | 'memberwise' | 'vmap': see use_memberwise

    @nn.compact
    def __call__(self, observations, actions, return_features: bool = False):
        x = jnp.concatenate([observations, actions], axis=-1)
        out, feats = ensemble_trunks(self, self.trunk, self.num_ensembles, x, True, self.dtype, self.ensemble_apply)
        q = out[..., 0]
        return (q, feats) if return_features else q


class VelocityField(nn.Module):
    """floq's critic velocity field v(t, z | s, a), an ensemble of E independent networks.

    Input of each member: concat(s, a, emb(z), emb(t)) where emb(z) is HL-Gauss probabilities over
    ``num_bins - 1`` bins on [q_min, q_max] (or min-max normalised z if ``use_prob_embed`` is off)
    and emb(t) is :func:`time_embedding`.  Default sizes: O + A + 50 + 1 inputs, 4 x 512 hidden.

    __call__(observations (B, O), actions (B, A), z (E, B), t (B,) or scalar) -> velocities (E, B).
    """

    trunk: TrunkSpec
    num_ensembles: int = 2
    q_min: float = -100.0
    q_max: float = 0.0
    use_prob_embed: bool = True
    num_bins: int = 51
    sigma: float = 16.0
    time_embed: str = 'cos'
    time_embed_dim: int = 64
    dtype: Dtype = jnp.float32
    ensemble_apply: str = 'auto'  # 'auto' | 'memberwise' | 'vmap': see use_memberwise

    def embed_z(self, z):
        if self.use_prob_embed:
            return hl_gauss_embedding(z, self.q_min, self.q_max, self.num_bins, self.sigma)
        return ((z - self.q_min) / (self.q_max - self.q_min))[..., None]

    @nn.compact
    def __call__(self, observations, actions, z, t, return_features: bool = False):
        num_members, batch = z.shape
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (batch,))
        sa = jnp.concatenate([observations, actions, time_embedding(t, self.time_embed, self.time_embed_dim)],
                             axis=-1)
        x = jnp.concatenate([jnp.broadcast_to(sa, (num_members, *sa.shape)), self.embed_z(z)], axis=-1)
        out, feats = ensemble_trunks(self, self.trunk, self.num_ensembles, x, False, self.dtype, self.ensemble_apply)
        v = out[..., 0]
        return (v, feats) if return_features else v


class ActorVectorField(nn.Module):
    """Actor network used for both FQL policies.

    BC flow policy: __call__(observations (B, O), x (B, A), t (B, 1)) -> velocity (B, A).
    One-step policy: __call__(observations (B, O), noise (B, A)) -> action (B, A).
    """

    hidden_dims: Sequence[int]
    action_dim: int
    layer_norm: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, observations, x, t=None):
        inputs = [observations, x] if t is None else [observations, x, t]
        return MLP(tuple(self.hidden_dims), self.action_dim, self.layer_norm, dtype=self.dtype,
                   name='mlp')(jnp.concatenate(inputs, axis=-1))
