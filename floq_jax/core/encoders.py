"""Pixel encoders: the IMPALA convolutional encoders of the published FQL and floq code (their
``utils/encoders.py`` ``encoder_modules``), same architecture, same initialisation, same input scaling.

An encoder maps uint8 frames (..., H, W, C) to features (..., F): the frames are cast to float32 and divided by
255 inside the encoder (so a dataset stays uint8 on the host, on the device and in every batch until here), then
``len(stack_sizes)`` residual stacks (a 3x3 conv, a 3x3 / stride-2 max pool, ``num_blocks`` residual blocks of
relu-conv-relu-conv; Xavier-uniform conv kernels, zero biases), a relu, (LayerNorm), the flattened map, and an MLP
whose every layer (the last too) is followed by GELU (FQL's MLP with ``activate_final=True``).

The submodule names (``stack_blocks_<i>/Conv_<j>``, ``MLP_0/Dense_<k>``) are the published ones, so
``ENCODERS[name]().init(key, frames)`` gives the published encoder's parameters for the same key, bit for bit
(tests/test_parity_pixels.py checks it against values the published code produced).
"""

import functools
from typing import Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from floq_jax.core.networks import default_init

FRAME_RANK = 3  # an encoder's input is (..., H, W, C)


class ResnetStack(nn.Module):
    """A 3x3 conv to ``num_features`` channels, a 3x3 / stride-2 max pool, then ``num_blocks`` residual blocks."""

    num_features: int
    num_blocks: int
    max_pooling: bool = True

    @nn.compact
    def __call__(self, x):
        conv = functools.partial(nn.Conv, features=self.num_features, kernel_size=(3, 3), strides=1,
                                 padding='SAME', kernel_init=nn.initializers.xavier_uniform())
        out = conv()(x)
        if self.max_pooling:
            out = nn.max_pool(out, window_shape=(3, 3), padding='SAME', strides=(2, 2))
        for _ in range(self.num_blocks):
            block_input = out
            out = conv()(nn.relu(out))
            out = conv()(nn.relu(out))
            out = out + block_input
        return out


class EncoderMLP(nn.Module):
    """The published MLP with ``activate_final=True``: Dense -> GELU (-> LayerNorm) for every layer."""

    hidden_dims: Sequence[int]
    layer_norm: bool = False

    @nn.compact
    def __call__(self, x):
        for width in self.hidden_dims:
            x = nn.gelu(nn.Dense(width, kernel_init=default_init())(x))
            if self.layer_norm:
                x = nn.LayerNorm()(x)
        return x


class ImpalaEncoder(nn.Module):
    """IMPALA encoder: uint8 (or float) frames (..., H, W, C) -> features (..., mlp_hidden_dims[-1])."""

    width: int = 1
    stack_sizes: tuple = (16, 32, 32)
    num_blocks: int = 2
    dropout_rate: Optional[float] = None
    mlp_hidden_dims: Sequence[int] = (512,)
    layer_norm: bool = False

    def setup(self):
        self.stack_blocks = [ResnetStack(num_features=size * self.width, num_blocks=self.num_blocks)
                             for size in self.stack_sizes]
        if self.dropout_rate is not None:
            self.dropout = nn.Dropout(rate=self.dropout_rate)

    @nn.compact
    def __call__(self, x, train=True):
        x = x.astype(jnp.float32) / 255.0
        out = x
        for stack in self.stack_blocks:
            out = stack(out)
            if self.dropout_rate is not None:
                out = self.dropout(out, deterministic=not train)
        out = nn.relu(out)
        if self.layer_norm:
            out = nn.LayerNorm()(out)
        out = out.reshape((*x.shape[:-FRAME_RANK], -1))
        return EncoderMLP(tuple(self.mlp_hidden_dims), layer_norm=self.layer_norm, name='MLP_0')(out)


# The published names (utils/encoders.py encoder_modules), with the same settings.
ENCODERS = {
    'impala': ImpalaEncoder,
    'impala_debug': functools.partial(ImpalaEncoder, num_blocks=1, stack_sizes=(4, 4)),
    'impala_small': functools.partial(ImpalaEncoder, num_blocks=1),
    'impala_large': functools.partial(ImpalaEncoder, stack_sizes=(64, 128, 128), mlp_hidden_dims=(1024,)),
}


def make_encoder(encoder: str, **kwargs) -> nn.Module:
    """The encoder named ``encoder`` (one of :data:`ENCODERS`); a one-line error names the accepted ones."""
    if encoder not in ENCODERS:
        raise ValueError(f"config.encoder must be None or one of {', '.join(sorted(ENCODERS))}, got {encoder!r}")
    return ENCODERS[encoder](**kwargs)


class Encoded(nn.Module):
    """A network whose observations pass through its own encoder first: ``net(encoder(observations), *rest)``.

    Params: {'encoder': ..., 'net': ...}.  ``encoded=True`` skips the encoder (the caller encoded the frames once,
    e.g. before a K-step integration); :meth:`encode` is the encoder alone (``module.apply(..., method='encode')``).
    Every other argument and keyword goes to ``net`` unchanged.
    """

    encoder: str
    net: nn.Module

    @nn.compact
    def encode(self, observations):
        return make_encoder(self.encoder, name='encoder')(observations)

    @nn.compact
    def __call__(self, observations, *args, encoded: bool = False, **kwargs):
        return self.net(observations if encoded else self.encode(observations), *args, **kwargs)


def with_encoder(module: nn.Module, encoder: Optional[str]) -> nn.Module:
    """``module`` behind its own encoder ``encoder`` (:class:`Encoded`), or ``module`` itself when None."""
    return module if encoder is None else Encoded(encoder, module.clone(name='net'))


def obs_rank(module) -> int:
    """The rank of one observation as ``module`` reads it: 3 (H, W, C) behind an encoder, else 1."""
    return FRAME_RANK if isinstance(module, Encoded) else 1


def batch_shape(module, observations):
    """The leading (batch) shape of ``observations`` as ``module`` reads them."""
    return observations.shape[:observations.ndim - obs_rank(module)]


def encode(module, params, observations):
    """The features ``module`` feeds its net for ``observations`` (the observations themselves without an
    encoder)."""
    if not isinstance(module, Encoded):
        return observations
    return module.apply({'params': params}, observations, method='encode')
