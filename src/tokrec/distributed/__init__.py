"""Batch feature extraction on a Ray cluster (optional: ``pip install 'tokrec[ray]'``).

Importing this package never imports Ray; the functions do, and raise a
:class:`~tokrec.errors.ConfigError` telling how to install it where it is absent.
"""

from __future__ import annotations

from typing import Any

from tokrec.distributed._ray import INSTALL_HINT, ClusterOptions, ray_available, require_ray
from tokrec.distributed.shards import read_vectors

__all__ = [
    "INSTALL_HINT",
    "ClusterOptions",
    "embed_items_ray",
    "embed_users_ray",
    "ray_available",
    "read_vectors",
    "recommend_ray",
    "require_ray",
]


def embed_items_ray(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """See :func:`tokrec.distributed.ray_embed.embed_items_ray`."""
    from tokrec.distributed.ray_embed import embed_items_ray as impl

    return impl(*args, **kwargs)


def recommend_ray(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """See :func:`tokrec.distributed.ray_recommend.recommend_ray`."""
    from tokrec.distributed.ray_recommend import recommend_ray as impl

    return impl(*args, **kwargs)


def embed_users_ray(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """See :func:`tokrec.distributed.ray_users.embed_users_ray`."""
    from tokrec.distributed.ray_users import embed_users_ray as impl

    return impl(*args, **kwargs)
