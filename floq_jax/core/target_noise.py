"""Noise added to TD regression targets (the mechanisms experiment), shared by floq and FQL."""

import jax

TARGET_NOISE_DISTS = ('uniform', 'gaussian')
# fold_in tag of the extra rng streams the switches draw from (target noise, IQN actor quantiles).  Not a
# small integer: with JAX's partitionable threefry, fold_in(key, i) can equal split(key, n)[i].
NOISE_STREAM = 0x5EED


def sample_target_noise(rng, shape, magnitude: float, dist: str = 'uniform'):
    """Noise added to TD regression targets: 'uniform' on [-magnitude, magnitude] (the published
    target-noise experiments) or 'gaussian' with std ``magnitude``."""
    if dist == 'gaussian':
        return magnitude * jax.random.normal(rng, shape)
    return magnitude * (2.0 * jax.random.uniform(rng, shape) - 1.0)
