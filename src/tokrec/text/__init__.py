"""Text ("LLM tokens"): item and user templates, normalisation, token budgets."""

from tokrec.text.normalize import normalize_array, normalize_series, normalize_text
from tokrec.text.templates import DEFAULT_EVENT_LABELS, ItemTemplate, TemplateSpec, UserTemplate

__all__ = [
    "DEFAULT_EVENT_LABELS",
    "ItemTemplate",
    "TemplateSpec",
    "UserTemplate",
    "normalize_array",
    "normalize_series",
    "normalize_text",
]
