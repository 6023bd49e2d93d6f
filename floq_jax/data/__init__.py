"""Offline data: OGBench loading/validation and oracle-based generation of OGBench-format datasets."""
from floq_jax.data.cache import default_cache_dir, ensure_generated_dataset
from floq_jax.data.errors import DatasetError
from floq_jax.data.generate import GENERATOR_VERSION, generate_dataset, generation_config
from floq_jax.data.names import FAMILIES, parse_name
from floq_jax.data.ogbench_io import OfflineData, load_offline_data, resolve_dataset_file, validate_file

__all__ = [
    'DatasetError', 'FAMILIES', 'GENERATOR_VERSION', 'OfflineData', 'default_cache_dir', 'ensure_generated_dataset',
    'generate_dataset', 'generation_config', 'load_offline_data', 'parse_name', 'resolve_dataset_file',
    'validate_file',
]
