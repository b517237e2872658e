"""tokrec: language-model features for recommender systems.

Behaviour log + item catalog -> LLM tokens (T_U, T_I) -> embeddings (Z_U, Z_I) -> features
F_ij = (R_ij, Z_U, Z_I) -> recommenders, evaluation and a real-time service.
"""

from tokrec.errors import ConfigError, DataError, TokrecError

__version__ = "0.1.0"
__all__ = ["ConfigError", "DataError", "TokrecError", "__version__"]
