"""The ceilings `make bench` derives from its per-convolution timings (no timing is run here)."""

import importlib.util
import os
import sys

import pytest
from conftest import ROOT


def _load_bench():
  """benchmarks/bench.py by path: it is a script beside the package, not part of it."""
  spec = importlib.util.spec_from_file_location("bench", os.path.join(ROOT, "benchmarks", "bench.py"))
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # as an import would: tools that look a function's module up find it
  spec.loader.exec_module(module)
  return module


bench = _load_bench()


def _runs():
  # Two 2-thread runs (as oneDNN on / off) and a 1-thread run, ms per call by op and form.
  return {
      "on": {"threads": 0, "batch_size": 256, "ops_ms": {"convT1 forward": {"default": 4.0, "subpixel conv2d": 3.0},
                                                         "d_conv1 forward": {"default": 2.0}}},
      "off": {"threads": 0, "batch_size": 256, "ops_ms": {"convT1 forward": {"default": 2.5, "subpixel conv2d": 5.0},
                                                          "d_conv1 forward": {"default": 4.0}}},
      "on, 1 thread": {"threads": 1, "batch_size": 256, "ops_ms": {"convT1 forward": {"default": 4.4, "subpixel conv2d": 6.0},
                                                                   "d_conv1 forward": {"default": 1.0}}},
  }


def test_kernel_ceiling_takes_each_convolutions_fastest_time_with_one_thread_times_shared():
  c = bench.kernel_ceiling(_runs(), cores=2)
  assert c["by_op"]["convT1 forward"] == {"effective_ms": 2.2, "form": "default", "run": "on, 1 thread"}
  assert c["by_op"]["d_conv1 forward"] == {"effective_ms": 0.5, "form": "default", "run": "on, 1 thread"}
  assert c["convolutions_ms_per_iteration"] == pytest.approx(2.7)
  assert c["images_per_second"] == pytest.approx(256 / 0.0027 / bench.STEPS, abs=0.1)


def test_one_process_ceiling_keeps_one_kernel_library_and_no_one_thread_run():
  # "on": 3.0 + 2.0 = 5.0 ms; "off": 2.5 + 4.0 = 6.5 ms; the 1-thread run does not count.
  assert bench.kernel_ceiling(_runs(), cores=2)["one_process"]["ms"] == pytest.approx(5.0)
  assert bench.kernel_ceiling(_runs(), cores=2)["one_process"]["run"] == "on"
  t = bench.training_ceiling(_runs(), cores=2)
  calls = bench.TRAINING_CONV_CALLS
  assert t["one_process"]["ms"] == pytest.approx(calls["convT1 forward"] * 3.0 + calls["d_conv1 forward"] * 2.0)
  assert t["convolutions_ms_per_batch"] == pytest.approx(calls["convT1 forward"] * 2.2 + calls["d_conv1 forward"] * 0.5)
  assert t["images_per_second"] > t["one_process"]["images_per_second"]


def _goals_report(torch=True):
  row = lambda ips, batch=256, images=2048, **extra: {"images_per_second": ips, "batch_size": batch, "images": images,
                                                      **extra}
  r = {"command": "make bench-goals", "date": "d", "commit": "c", "wall_seconds": 1.0, "cpu_bf16": "amx",
       "machine": {"cpu": "cpu", "cores": 2, "ghz": 2.6}, "mapping_iterations": 150,
       "load_average_at_start": [1, 1, 1], "load_average_at_end": [1, 1, 1],
       "split_fp32": row(20.0, 1024), "split_bf16": row(60.0), "train_fp32": row(1000.0), "train_bf16": row(2000.0),
       "one_fp32": row(4.0, 1, 8), "one_bf16": row(6.0, 1, 8), "seed_fp32": row(1.5, 1, 4), "seed_bf16": row(1.2, 1, 4),
       "pictures": {"rounds": 2, "images": 256, "data": "uniform noise", "networks": "experiments/pictures_draem.flags",
                    "image_shape": [64, 64, 3], "batch_size": {"training": 16, "scoring": {"float32": 64, "bfloat16": 64}},
                    "training": {"images_per_second": {"float32": [70.0, 80.0], "bfloat16": [120.0, 120.0]},
                                 "bf16_over_fp32_per_round": [1.71, 1.5], "bf16_over_fp32_median": 1.6},
                    "scoring": {"images_per_second": {"float32": [300.0, 290.0], "bfloat16": [700.0, 690.0]},
                                "bf16_over_fp32_per_round": [2.33, 2.38], "bf16_over_fp32_median": 2.36}}}
  if torch:
    r.update(torch_map_fp32=row(5.0, 1024, torch="2"), torch_map_bf16=row(30.0), torch_map_fp32_at_bf16_batch=row(10.0))
  else:
    r["pytorch"] = {"skipped": "no torch"}
  return r


@pytest.mark.parametrize("torch", [True, False])
def test_the_goals_ratios_and_their_table(torch):
  r = _goals_report(torch)
  r["ratios"] = x = bench.goal_ratios(r)
  assert x["mapping_bf16_over_fp32"] == 3.0 and x["training_bf16_over_fp32"] == 2.0
  assert x["batched_over_one_by_one_bf16"] == 10.0 and x["batched_bf16_over_seed_style_fp32"] == 40.0
  text = "\n".join(bench.goals_lines(r))
  assert "| mapping bf16 / our fp32 | 3.0x | >= 3x |" in text
  assert x["pictures_training_bf16_over_fp32"] == 1.6 and x["pictures_scoring_bf16_over_fp32"] == 2.36
  assert "| training | 70.0, 80.0 | 120.0, 120.0 | 1.71, 1.5 | 1.6x |" in text
  if torch:
    assert x["mapping_bf16_over_pytorch_fp32"] == 12.0 and x["mapping_bf16_over_pytorch_fp32_best"] == 6.0
    assert x["mapping_bf16_over_pytorch_bf16"] == 2.0 and "| bfloat16 autocast | 256 | 30.0 |" in text
  else:
    assert "mapping_bf16_over_pytorch_fp32" not in x and "skipped (no torch)" in text
