"""The driver layer: devices and meshes and the seed-parallel chunks (``parallel``), the run loop, sinks (CSV,
TensorBoard, wandb), orbax checkpoints and the benchmark's timing helpers."""
