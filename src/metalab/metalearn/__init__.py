"""metalab.metalearn: gradient-based meta-learning, one protocol for every method.

Every method is a factory returning a :class:`MetaLearner` with ``init(params, key) ->
MetaState`` and ``update(state, key, tasks) -> (state, info)``; the outer optimiser is given
once, to the factory::

    learner = metalearn.leap(loss_fn, inner_lr=0.1, num_steps=100, outer=optax.adam(1e-3))
    state = learner.init(params, key)
    state, info = learner.update(state, key, tasks)

Methods (:data:`METHODS`, by name): ``leap``, ``maml``, ``fomaml``, ``reptile``,
``warpgrad`` (over :class:`WarpParams`), and the baselines ``pretrain`` (multi-task
pretraining, "fine-tuning") and ``scratch`` (no pretraining). Static choices are frozen
``*Config`` dataclasses (:class:`LeapConfig`); traced hyper-parameters (``inner_lr``) accept
arrays, so they can be vmapped. Modules: ``adapt`` (the shared inner loop), ``learner`` (the
protocol), ``nets`` (MLPs and convnets with warp layers), ``tasks`` (sinusoid, long-horizon
regression, few-shot digits), ``maze`` (gymnax MetaMaze goals). See docs/metalearn.md.
"""

from metalab.metalearn.adapt import AdaptResult, LeapConfig, Step, adapt, training_curve
from metalab.metalearn.baselines import pretrain, scratch
from metalab.metalearn.leap import leap, leap_meta_grad
from metalab.metalearn.learner import MetaLearner, MetaState, from_meta_grad, meta_train
from metalab.metalearn.maml import fomaml, maml, maml_meta_grad
from metalab.metalearn.reptile import reptile, reptile_meta_grad
from metalab.metalearn.tasks import Task
from metalab.metalearn.warpgrad import WarpParams, warpgrad

#: Every method's factory by name; all share ``(loss_fn, *, inner_lr, num_steps, outer)``
#: (``warpgrad``'s loss also takes the warp parameters).
METHODS = {
    "leap": leap,
    "maml": maml,
    "fomaml": fomaml,
    "reptile": reptile,
    "warpgrad": warpgrad,
    "pretrain": pretrain,
    "scratch": scratch,
}

__all__ = [
    "METHODS",
    "AdaptResult",
    "LeapConfig",
    "MetaLearner",
    "MetaState",
    "Step",
    "Task",
    "WarpParams",
    "adapt",
    "fomaml",
    "from_meta_grad",
    "leap",
    "leap_meta_grad",
    "maml",
    "maml_meta_grad",
    "meta_train",
    "pretrain",
    "reptile",
    "reptile_meta_grad",
    "scratch",
    "training_curve",
    "warpgrad",
]
