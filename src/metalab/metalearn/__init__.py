"""metalab.metalearn: gradient-based meta-learning on one shared inner loop.

Modules: ``adapt`` (the inner loop: SGD as a lax.scan with snapshots and Leap's accumulated
meta-gradient), ``maml`` (MAML, FOMAML), ``reptile``, ``leap``, ``warpgrad`` (warp layers,
replay buffer, one-step warp objective, Warp-Leap / Warp-MAML), ``baselines`` (fine-tuning,
no pretraining), ``nets`` (functional MLPs with warp layers), ``tasks`` (sinusoid,
long-horizon regression, few-shot digits with affine alphabets), ``maze`` (gymnax MetaMaze
goals). See docs/metalearn.md.
"""
