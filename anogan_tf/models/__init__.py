"""Model families: one module each, the same interface (base.py), registered here.

`FAMILIES` maps each --model value to its module. Importing anogan_tf imports this registry, and
with it every family module, so every family's networks are registered with Keras and load from
their .keras files with no `custom_objects`. Adding a family: its module, and its line below.
"""

from __future__ import annotations

from types import ModuleType
from typing import Dict, Tuple

from anogan_tf.config import checks, examples_of, one_of
from anogan_tf.errors import AnoganError
from anogan_tf.models import ae, anogan, convlstm_ae, draem, egbad, lstm_ae, vae

FAMILIES: Dict[str, ModuleType] = {
    anogan.NAME: anogan,  # the default
    egbad.NAME: egbad,
    ae.NAME: ae,
    vae.NAME: vae,
    lstm_ae.NAME: lstm_ae,
    convlstm_ae.NAME: convlstm_ae,
    draem.NAME: draem,
}


def names() -> Tuple[str, ...]:
  """The --model values, in the registry's order."""
  return tuple(FAMILIES)


def family(name: str) -> ModuleType:
  """The family module of --model=name, or AnoganError naming the valid values."""
  if name not in FAMILIES:
    raise AnoganError(f"unknown --model '{name}'; use one of {', '.join(FAMILIES)}")
  return FAMILIES[name]


def network_files() -> Tuple[str, ...]:
  """Every family's <network>.keras file name: what a workdir may hold (cleared by --overwrite)."""
  return tuple(dict.fromkeys(f"{name}.keras" for module in FAMILIES.values() for name in module.NETWORKS))


def examples(module) -> str:
  """What one example of the family is: its EXAMPLES ("images", "series", "clips"); images unless it says."""
  return getattr(module, "EXAMPLES", "images")


def trains_a_gan_discriminator(module) -> bool:
  """Whether the family trains a GAN's D, which --diffaugment and --d_spectral_norm apply to (its GAN_DISCRIMINATOR)."""
  return getattr(module, "GAN_DISCRIMINATOR", False)


def check_config(config) -> None:
  """--model names a registered family, and every family's own settings are valid (a family
  rejects its settings where they make no sense, e.g. AnoGAN's warm start with another --model)."""
  one_of(config.model, names(), "--model")
  takes, holds = examples(FAMILIES[config.model]), examples_of(config.dataset)
  if takes != holds:
    fit = [name for name, module in FAMILIES.items() if examples(module) == holds]
    raise AnoganError(f"--model={config.model} takes {takes}, but --dataset={config.dataset} holds {holds}; use "
                      f"--model={' or --model='.join(fit) or '(none yet)'} for {holds}, or a dataset of {takes}")
  if (config.diffaugment or config.d_spectral_norm) and not trains_a_gan_discriminator(FAMILIES[config.model]):
    gans = [name for name, module in FAMILIES.items() if trains_a_gan_discriminator(module)]
    raise AnoganError(f"--diffaugment and --d_spectral_norm train a GAN's discriminator, which --model={config.model} "
                      f"has not; use --model={' or --model='.join(gans)}, or drop them")
  for module in FAMILIES.values():
    if hasattr(module, "check_config"):
      module.check_config(config)


checks.FAMILY_CHECKS.append(check_config)  # every Config is checked against the registered families
