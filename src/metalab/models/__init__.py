"""metalab.models: adaptive parameterisation (aLSTM), SpaceGAN and QuantNet.

Modules: ``adaptive`` (aLSTM cell, adaptive feed-forward, word LM), ``lm_data`` (PTB and
WikiText-2 readers, synthetic corpus), ``lm_train`` (truncated-BPTT training loop), ``moran``
(spatial weights, local Moran's I), ``spatial_data`` (toy grids, Baltimore), ``spacegan``,
``finance_metrics`` (Sharpe, Calmar, drawdown), ``market_data`` (generator, CSV loader) and
``quantnet``. See docs/models.md.
"""
