"""Students: fine-tune a model on generated data (``fusion-of-n train``) and use it like any other model.

:mod:`.examples` turns records into prompt/completion pairs (no heavy imports); :mod:`.bases` finds the
base model as a Hugging Face folder; :mod:`.sft` trains with TRL (the ``train`` extra); :mod:`.convert`
writes the GGUF that ``local:DIR`` loads; :mod:`.manifest` owns ``DIR/train.json``.
"""

from __future__ import annotations

from .examples import TRAIN_SKIP_FLAGS, Examples, load_examples, split_examples
from .sft import TrainConfig, TrainObserver, train

__all__ = ["TRAIN_SKIP_FLAGS", "Examples", "TrainConfig", "TrainObserver", "load_examples", "split_examples", "train"]
