"""The numerical core: networks, the flow integrator, FQL's actor, the agent base, target noise, replay, FLOPs.

Pure JAX: functions of (params, batch, rng), no files, no prints, no environments.
"""
