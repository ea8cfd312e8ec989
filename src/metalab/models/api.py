"""The one shape shared by the three models: ``make_<model>(config) -> Model(init, apply, train)``.

* ``init(key, data) -> params``: fresh parameters for a problem of ``data``'s shape.
* ``apply(params, data, key) -> outputs``: the model's forward map on ``data`` (``key`` is used
  by stochastic models, e.g. a generator's noise; deterministic ones ignore it).
* ``train(key, data) -> (params, info)``: a whole training run as one pure function (a
  ``lax.scan``), so ``jax.jit(jax.vmap(train, (0, None)))(keys, data)`` runs seeds in parallel;
  ``params`` is what ``apply`` takes, ``info`` a dict of arrays (loss curves, selection curves,
  extra checkpoints).

``config`` is a frozen dataclass of static settings (sizes, steps, rates); ``data`` a
model-specific ``NamedTuple`` of arrays:

=============  =========================  =============================================
model          config                     data
=============  =========================  =============================================
``make_lm``    :class:`LMConfig`          :class:`LMData` (batchified train/valid ids)
``make_spacegan`` :class:`SpaceGANConfig`  :class:`SpatialTask` (condition, y, W, mask)
``make_quantnet`` :class:`QuantNetSettings` :class:`Prepared` (inputs, returns, validity)
=============  =========================  =============================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple


class Model(NamedTuple):
    """``init(key, data) -> params``, ``apply(params, data, key) -> out``,
    ``train(key, data) -> (params, info)``; all pure, jit- and vmap-compatible."""

    init: Callable[..., Any]
    apply: Callable[..., Any]
    train: Callable[..., tuple[Any, dict[str, Any]]]
