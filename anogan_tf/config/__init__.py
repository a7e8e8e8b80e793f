"""The settings of a run: one frozen dataclass (`Config`, schema.py), the value sets and formats of
its fields (values.py), the networks' depth per image size (layouts.py) and the checks every
Config passes (checks.py; each model family adds its own through the registry)."""

from anogan_tf.config.checks import check, one_of  # noqa: F401
from anogan_tf.config.layouts import discriminator_feature_layers  # noqa: F401
from anogan_tf.config.schema import EVALUATION_FIELDS, RESUMABLE_FIELDS, Config, evaluation_config  # noqa: F401
from anogan_tf.config.values import (  # noqa: F401
                                     ACTIVATIONS,
                                     CLIP_DATASETS,
                                     DATASET_EXAMPLES,
                                     DATASETS,
                                     DENSE_NORMS,
                                     DISTRIBUTIONS,
                                     FOLDER_IMAGE_SIZE,
                                     IMAGE_SIZES,
                                     NATIVE_SHAPES,
                                     PICTURE_DATASETS,
                                     PRECISIONS,
                                     REDUCTIONS,
                                     UPSAMPLINGS,
                                     examples_of,
                                     flag_text,
                                     parse_value,
)
