"""Prints the evaluation results of one or more workdirs as a table, with where the figures are.

  python -m anogan_tf.summarize runs/mnist_0 runs/mnist_1
"""

import json
import os
import sys


def main(workdirs):
  rows = []
  for workdir in workdirs:
    path = os.path.join(workdir, "eval", "metrics.json")
    if not os.path.exists(path):
      print(f"error: {path} is missing; run python -m anogan_tf.evaluate --workdir={workdir}", file=sys.stderr)
      return 2
    with open(path) as f:
      rows.append((workdir, json.load(f)))
  print(f"{'workdir':<28} {'normal':>8} {'AUROC':>8} {'AUPRC':>8} {'images':>7} {'seconds':>8}")
  for workdir, m in rows:
    normal = ",".join(str(c) for c in m["normal_classes"])
    print(f"{workdir:<28} {normal:>8} {m['auroc']:>8.4f} {m['auprc']:>8.4f} {m['test_examples']:>7} "
          f"{m['seconds']:>8.1f}")
  if len(rows) > 1:
    print(f"{'mean':<28} {'':>8} {sum(m['auroc'] for _, m in rows) / len(rows):>8.4f}")
  print("figures (ROC, PR, histogram, gallery, mapping loss): " + ", ".join(f"{w}/eval/" for w, _ in rows))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
