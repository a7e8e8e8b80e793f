"""anogan_tf: AnoGAN (Schlegl et al., IPMI 2017, https://arxiv.org/abs/1703.05921) in TF2 / Keras 3,
and the anomaly detectors it is compared with, as model families on one protocol (`--model`).

Importing the package imports every model family (anogan_tf.models) and so registers all their
networks with Keras: `keras.models.load_model("generator.keras")` (or any family's
`<network>.keras`) needs no `custom_objects`.

As a library it changes no process-wide setting: no environment variable, not TensorFlow's
logging nor its kernels. Only the command-line tools (`python -m anogan_tf.<tool>`) choose them:
on x86-64 they turn TensorFlow's oneDNN kernels on (`TF_ENABLE_ONEDNN_OPTS=1` unless it is set;
see `_choose_onednn`), and they quiet TensorFlow so that they print their own progress and
results: they set `TF_CPP_MIN_LOG_LEVEL=2` unless it is set (TensorFlow's C++ errors still show),
and drop the few lines TensorFlow 2.21 prints on every run that are not problems, which no
environment variable reaches. See anogan_tf/cli/quiet.py, whose `quiet_tensorflow` scripts
such as experiments/reproduce.py call for themselves.
"""

import os as _os
import platform as _platform

from anogan_tf.cli import quiet as _quiet  # standard library only: TensorFlow is not loaded yet


def _choose_onednn() -> None:
  """For the command-line tools, before TensorFlow loads: TensorFlow turns its oneDNN kernels on
  by default only on some Intel CPUs; on the other x86-64 CPUs they are off, and with them mapping
  and training run much faster (`make bench`, docs/speed.md). A program that
  imports the library decides for itself, as they also change the rounding of its numbers;
  TF_ENABLE_ONEDNN_OPTS=0 opts a command out."""
  if _platform.machine().lower() in ("x86_64", "amd64"):
    _os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


if _quiet.run_as_a_command():
  _choose_onednn()
  _quiet.quiet_tensorflow()

from anogan_tf import models  # noqa: E402  (before mapper.py, which builds on models/base.py)
from anogan_tf.config import Config  # noqa: E402
from anogan_tf.errors import AnoganError  # noqa: E402
from anogan_tf.models.anogan.mapper import LatentMapper, MappingResult  # noqa: E402
from anogan_tf.models.base import ScoreResult  # noqa: E402
from anogan_tf.nn import losses  # noqa: E402
from anogan_tf.nn.networks import Discriminator, Encoder, Generator  # noqa: E402

__all__ = ["Config", "AnoganError", "Generator", "Discriminator", "Encoder", "LatentMapper", "MappingResult",
           "ScoreResult", "models", "losses"]
__version__ = "0.1.0"
