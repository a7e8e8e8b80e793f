"""Scores written to CSV read back bit for bit."""

import csv

import numpy as np

from anogan_tf.utils.files import exact, write_scores_csv


def test_scores_that_differ_in_the_ninth_digit_read_back_bit_for_bit(tmp_path):
  a32 = np.float32(0.12)
  # adjacent float32 values: 0.119999997, 0.120000005 and 0.11999999: equal to 8 significant digits
  scores32 = np.array([a32, np.nextafter(a32, np.float32(1)), np.nextafter(a32, np.float32(0)), 3.4e38, 1e-45],
                      np.float32)
  assert f"{scores32[0]:.8g}" == f"{scores32[1]:.8g}"  # what the old format lost
  a64 = 0.1234567890123456
  scores64 = np.array([a64, np.nextafter(a64, 1), np.nextafter(a64, 0), 1e308, 5e-324])
  path = tmp_path / "scores.csv"
  write_scores_csv(str(path), ("file", "score32", "score64"),
                   [(f"x{i}", exact(s), exact(t)) for i, (s, t) in enumerate(zip(scores32, scores64))])
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
  back32 = np.array([float(r["score32"]) for r in rows])
  back64 = np.array([float(r["score64"]) for r in rows])
  # float32 widened exactly: the same float64 values the metrics are computed from in memory
  assert back32.tobytes() == scores32.astype(np.float64).tobytes()
  assert back32.astype(np.float32).tobytes() == scores32.tobytes()
  assert back64.tobytes() == scores64.tobytes()
