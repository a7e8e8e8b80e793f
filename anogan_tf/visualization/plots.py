"""Figures: sample grids, loss curves, ROC / PR / histogram, the query / reconstruction / residual gallery,
and score's per-image reports and gallery of the most anomalous images."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from anogan_tf.utils.files import atomic_path, save_figure  # noqa: E402


def to_display(images: np.ndarray) -> np.ndarray:
  """[-1, 1] (n, h, w, c) -> [0, 1], with single channels squeezed for imshow."""
  images = np.clip((np.asarray(images) + 1.0) / 2.0, 0.0, 1.0)
  return images[..., 0] if images.shape[-1] == 1 else images


def as_pictures(examples, reconstructions, residual_maps):
  """(examples, reconstructions, residual maps), each (N,) + example shape, as pictures
  (N, h, w, c) for the figures: images as they are; clips (N, T, h, w, c) by each clip's frame with
  the largest residual; series (N, T, features) as features x time, each feature a band of rows,
  so a residual map shows where in time. Other shapes: ValueError."""
  x = np.asarray(examples)
  if x.ndim == 4:
    return examples, reconstructions, residual_maps
  if x.ndim == 5:
    rows = np.arange(len(x))
    frame = np.asarray(residual_maps).reshape(len(x), x.shape[1], -1).sum(axis=-1).argmax(axis=1)
    return tuple(np.asarray(a)[rows, frame] for a in (examples, reconstructions, residual_maps))
  if x.ndim == 3:
    band = max(1, x.shape[1] // (4 * x.shape[2]))  # a picture about 4 times wider than high
    return tuple(np.repeat(np.transpose(np.asarray(a), (0, 2, 1)), band, axis=1)[..., None]
                 for a in (examples, reconstructions, residual_maps))
  raise ValueError(f"no picture for examples of shape {x.shape[1:]}")


def tile(images: np.ndarray, columns: int = 8, gap: int = 0, fill=1.0) -> np.ndarray:
  """(n, h, w[, c]) -> one (rows*h + (rows-1)*gap, columns*w + (columns-1)*gap[, c]) mosaic, `fill`
  (white in [0, 1]) between the images and in empty places."""
  n, h, w = images.shape[:3]
  rows = -(-n // columns)
  canvas = np.full((rows * (h + gap) - gap, columns * (w + gap) - gap) + images.shape[3:], fill, images.dtype)
  for i, image in enumerate(images):
    r, c = divmod(i, columns)
    canvas[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = image
  return canvas


def save_grid(images: np.ndarray, path: str, columns: int = 8) -> None:
  with atomic_path(path) as tmp:
    plt.imsave(tmp, tile(to_display(images), columns), cmap="gray", vmin=0.0, vmax=1.0)


def loss_plot(history: list, path: str, keys=("g_loss", "d_loss")) -> None:
  """The losses `keys` of history.csv's rows against the epoch."""
  fig, ax = plt.subplots(figsize=(7, 4))
  epochs = [row["epoch"] for row in history]
  for key in keys:
    ax.plot(epochs, [row[key] for row in history], label=key)
  ax.set_xlabel("epoch")
  ax.set_ylabel("loss")
  ax.legend()
  save_figure(fig, path)


def roc_pr_plots(labels, scores, auroc, auprc, out_dir: str) -> None:
  """roc.png, and pr.png with both precision-recall curves: anomalies as positives (high score =
  anomalous; metrics.json's auprc) and normals as positives (low score = normal; auprc_normal).
  With few normals in the test split, the first starts near 1 by chance and the second near 0."""
  from sklearn.metrics import average_precision_score, precision_recall_curve, roc_curve
  labels, scores = np.asarray(labels), np.asarray(scores)
  fpr, tpr, _ = roc_curve(labels, scores)
  fig, ax = plt.subplots(figsize=(5, 5))
  ax.plot(fpr, tpr, label=f"AUROC {auroc:.4f}")
  ax.plot([0, 1], [0, 1], "k:", lw=1)
  ax.set_xlabel("false positive rate (normals flagged)")
  ax.set_ylabel("true positive rate (anomalies flagged)")
  ax.legend(loc="lower right")
  save_figure(fig, f"{out_dir}/roc.png")
  auprc_normal = average_precision_score(1 - labels, -scores)
  fig, ax = plt.subplots(figsize=(5, 5))
  for positive, truth, ranking, value, colour in (("anomalies", labels, scores, auprc, "C0"),
                                                  ("normals", 1 - labels, -scores, auprc_normal, "C1")):
    precision, recall, _ = precision_recall_curve(truth, ranking)
    ax.plot(recall, precision, color=colour, label=f"{positive} positive: AUPRC {value:.4f}")
    ax.axhline(np.mean(truth), color=colour, ls=":", lw=1, label=f"chance ({positive}): {np.mean(truth):.3f}")
  ax.set_xlabel("recall (share of the positive class found)")
  ax.set_ylabel("precision")
  ax.set_ylim(0, 1.02)
  ax.legend(loc="best", fontsize=8)
  save_figure(fig, f"{out_dir}/pr.png")


def score_histogram(labels, scores, path: str) -> None:
  fig, ax = plt.subplots(figsize=(7, 4))
  bins = np.linspace(np.min(scores), np.max(scores), 60)
  for value, name in ((0, "normal"), (1, "anomalous")):
    ax.hist(scores[labels == value], bins=bins, alpha=0.6, label=name, density=True)
  ax.set_xlabel("anomaly score")
  ax.set_ylabel("density")
  ax.legend()
  save_figure(fig, path)


def mapping_loss_plot(mean_trajectory: np.ndarray, path: str) -> None:
  fig, ax = plt.subplots(figsize=(7, 4))
  ax.plot(np.arange(1, len(mean_trajectory) + 1), mean_trajectory)
  ax.set_xlabel("mapping iteration")
  ax.set_ylabel("mean mapping loss")
  ax.set_yscale("log")
  save_figure(fig, path)


MASK_COLOUR = "lime"  # the outline of the ground-truth mask in the gallery


def map_name(residual_is_error: bool) -> str:
  """What a family's residual_map is, as the figures name it (Scorer.residual_is_error): the
  residual |query - reconstruction|, or the family's own anomaly map, a probability in [0, 1]."""
  return "|query - reconstruction|" if residual_is_error else "anomaly map (probability)"


def gallery(queries, reconstructions, residual_maps, titles, path: str, masks=None,
            residual_is_error: bool = True) -> None:
  """Columns of query / reconstruction (AnoGAN's G(z*)) / residual map |x - reconstruction| (or,
  residual_is_error False, the family's anomaly map in [0, 1]), one column per image. `masks`
  (n, h, w) bool, when the dataset has them: each image's defect outlined on its query and its
  residual map, to compare where the residual is high.
  Each row is one picture (the images side by side, white between them), not one panel per image:
  drawing n panels costs matplotlib several times more, every evaluation."""
  n, w = len(queries), np.shape(queries)[2]
  gap = max(1, w // 8)
  fig, axes = plt.subplots(3, 1, figsize=(1.3 * n, 4.4), squeeze=False)
  rows = (("query", to_display(queries), "gray"), ("reconstruction", to_display(reconstructions), "gray"),
          ("residual" if residual_is_error else "anomaly map", np.asarray(residual_maps).mean(axis=-1), "inferno"))
  top = 2.0 if residual_is_error else 1.0  # |x - x'| of pictures in [-1, 1] reaches 2; a probability 1
  outlined = None if masks is None or not np.any(masks) else tile(np.asarray(masks, np.float32), n, gap, 0.0)
  for r, (label, images, cmap) in enumerate(rows):
    ax = axes[r, 0]
    # the space between the images: white (NaN, the colour map's "bad" colour; 1 for colour pictures)
    strip = tile(np.asarray(images, np.float32), n, gap, 1.0 if images.ndim == 4 else np.nan)
    ax.imshow(strip, cmap=plt.get_cmap(cmap).with_extremes(bad="white"), vmin=0.0, vmax=1.0 if r < 2 else top,
              interpolation="nearest")
    if outlined is not None and r != 1:
      ax.contour(outlined, levels=[0.5], colors=MASK_COLOUR, linewidths=0.8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_frame_on(False)
    ax.set_ylabel(label)
    if r == 0:
      for c, title in enumerate(titles):
        ax.text(c * (w + gap) + (w - 1) / 2, -1.0, title, fontsize=7, ha="center", va="bottom")
  save_figure(fig, path)


# --- series (N, T, features): the series with its reconstruction, and the residual over time

def _series_axes(top, bottom, series, reconstruction, residual, residual_top: float) -> None:
  """`top`: each feature of the series (solid) and its reconstruction (dashed, same colour);
  `bottom`: the residual |x - x'| summed over features at each time step, from 0 to `residual_top`."""
  steps = np.arange(len(series))
  for f in range(series.shape[-1]):
    line, = top.plot(steps, series[:, f], lw=0.9)
    top.plot(steps, reconstruction[:, f], lw=0.9, ls="--", color=line.get_color())
  top.set_ylim(-1.05, 1.05)
  top.tick_params(labelsize=6)
  per_step = residual.sum(axis=-1)
  bottom.fill_between(steps, per_step, color="tab:red", alpha=0.6, lw=0)
  bottom.set_ylim(0, residual_top)
  bottom.set_xlim(0, max(len(series) - 1, 1))
  bottom.tick_params(labelsize=6)


def series_residual_scale(residual_maps) -> float:
  """The top of the residual axis of a run: its largest per-step residual (summed over features)."""
  return max(float(np.asarray(residual_maps).sum(axis=-1).max()), 1e-6)


def series_gallery(series, reconstructions, residual_maps, titles, path: str, columns: int = 0) -> None:
  """Series (n, T, features), one panel pair each: the series (solid) and its reconstruction
  (dashed) above, the residual over time below (one scale for all), titled; `columns` per row
  (0: all in one row)."""
  series, reconstructions, residual_maps = (np.asarray(a) for a in (series, reconstructions, residual_maps))
  n = len(series)
  cols = min(columns or n, n)
  rows = -(-n // cols)
  top = series_residual_scale(residual_maps)
  fig = plt.figure(figsize=(2.2 * cols, 2.6 * rows))
  grid = fig.add_gridspec(2 * rows, cols, height_ratios=(2, 1) * rows, hspace=0.15, wspace=0.3)
  for i in range(n):
    r, c = divmod(i, cols)
    upper = fig.add_subplot(grid[2 * r, c])
    lower = fig.add_subplot(grid[2 * r + 1, c], sharex=upper)
    _series_axes(upper, lower, series[i], reconstructions[i], residual_maps[i], top)
    upper.set_title(titles[i], fontsize=7)
    upper.tick_params(labelbottom=False)
    if c == 0:
      upper.set_ylabel("series, reconstruction", fontsize=6)
      lower.set_ylabel("|x - x'|", fontsize=6)
  save_figure(fig, path)


def series_reports(series, reconstructions, residual_maps, titles, paths, top: float) -> None:
  """One PNG per series at `paths` (REPORT_INCHES at REPORT_DPI): the series with its
  reconstruction, and below the residual over time on the run's scale 0..`top`
  (series_residual_scale), under its title (name, score, decision)."""
  for x, reconstruction, residual, text, path in zip(series, reconstructions, residual_maps, titles, paths):
    fig = plt.figure(figsize=REPORT_INCHES, dpi=REPORT_DPI)
    grid = fig.add_gridspec(2, 1, height_ratios=(2, 1), left=0.08, right=0.98, top=0.8, bottom=0.1, hspace=0.1)
    upper = fig.add_subplot(grid[0])
    lower = fig.add_subplot(grid[1], sharex=upper)
    _series_axes(upper, lower, np.asarray(x), np.asarray(reconstruction), np.asarray(residual), top)
    upper.tick_params(labelbottom=False)
    upper.set_ylabel("x, x' (dashed)", fontsize=6)
    lower.set_ylabel("|x - x'|", fontsize=6)
    lower.set_xlabel("time step", fontsize=6)
    fig.suptitle(text, fontsize=8)
    with atomic_path(path) as tmp:
      fig.savefig(tmp, format="png", dpi=REPORT_DPI)
    plt.close(fig)


# --- score's report: one readable figure per image, and a gallery of the most anomalous

REPORT_INCHES = (6.4, 2.6)  # about 6 inches wide: three readable panels and a colour bar
REPORT_DPI = 150  # so every report is exactly 960 x 390 pixels
RESIDUAL_CMAP = "inferno"


def residual_scale(residual_maps) -> float:
  """The top of the colour scale of a run: its largest residual (mean over channels), so every
  figure of the run uses one scale and their colours compare."""
  return max(float(np.asarray(residual_maps).mean(axis=-1).max()), 1e-6)


def _overlay(ax, query, residual, vmax: float):
  """The query in gray (or colour) with the residual heatmap over it: more opaque where the
  residual is larger, so low residuals leave the query visible. Returns the two images."""
  base = ax.imshow(query, cmap="gray" if query.ndim == 2 else None, vmin=0.0, vmax=1.0)
  heat = ax.imshow(residual, cmap=RESIDUAL_CMAP, vmin=0.0, vmax=vmax,
                   alpha=_heat_alpha(residual, vmax))
  return base, heat


def _heat_alpha(residual, vmax: float) -> np.ndarray:
  return 0.2 + 0.7 * np.clip(residual / vmax, 0.0, 1.0)


def _colour_bar(fig, cax, vmax: float, run_size: int, residual_is_error: bool):
  mappable = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0.0, vmax), cmap=RESIDUAL_CMAP)
  bar = fig.colorbar(mappable, cax=cax)
  bar.set_label(f"{map_name(residual_is_error)}: one scale for\nall {run_size} images of this run", fontsize=7)
  bar.ax.tick_params(labelsize=7)


def _bare(ax):
  ax.set_xticks([])
  ax.set_yticks([])


def score_reports(queries, reconstructions, residual_maps, titles, paths, vmax: float,
                  residual_is_error: bool = True) -> None:
  """One PNG per image at `paths` (REPORT_INCHES at REPORT_DPI, exactly): the query, its
  reconstruction (AnoGAN's G(z*)), and the residual |query - reconstruction| (mean over
  channels; or the family's anomaly map, residual_is_error False) laid over the query, with a
  colour bar from 0 to `vmax` (one scale for the run; see residual_scale). `titles` (one or two
  lines each) name the image, its score and decision.
  The figure is drawn once; for each image only its pictures and title are drawn again over the
  saved background (matplotlib's blitting), about five times faster than a savefig per image."""
  from PIL import Image
  queries, reconstructions = to_display(queries), to_display(reconstructions)
  residuals = np.asarray(residual_maps).mean(axis=-1)
  cmap = "gray" if queries.ndim == 3 else None
  fig = plt.figure(figsize=REPORT_INCHES, dpi=REPORT_DPI)
  try:
    grid = fig.add_gridspec(1, 4, width_ratios=(1, 1, 1, 0.06), left=0.02, right=0.87, top=0.76, bottom=0.03,
                            wspace=0.08)
    axes = [fig.add_subplot(grid[0, i]) for i in range(3)]
    overlaid = "residual" if residual_is_error else "anomaly map"
    for ax, label in zip(axes, ("query", "reconstruction", f"{overlaid} over the query")):
      _bare(ax)
      ax.set_title(label, fontsize=8)
    _colour_bar(fig, fig.add_subplot(grid[0, 3]), vmax, len(queries), residual_is_error)
    query_image = axes[0].imshow(queries[0], cmap=cmap, vmin=0.0, vmax=1.0)
    reconstruction_image = axes[1].imshow(reconstructions[0], cmap=cmap, vmin=0.0, vmax=1.0)
    base, heat = _overlay(axes[2], queries[0], residuals[0], vmax)
    title = fig.suptitle("", fontsize=9)
    drawn = ((axes[0], (query_image,)), (axes[1], (reconstruction_image,)), (axes[2], (base, heat)))
    for artist in (query_image, reconstruction_image, base, heat, title):
      artist.set_animated(True)  # left out of the background
    fig.canvas.draw()
    background = fig.canvas.copy_from_bbox(fig.bbox)
    for query, reconstruction, residual, text, path in zip(queries, reconstructions, residuals, titles, paths):
      query_image.set_data(query)
      reconstruction_image.set_data(reconstruction)
      base.set_data(query)
      heat.set_data(residual)
      heat.set_alpha(_heat_alpha(residual, vmax))
      title.set_text(text)
      fig.canvas.restore_region(background)
      for ax, images in drawn:
        for artist in images + tuple(ax.spines.values()):  # the frame again, over the picture's edge
          ax.draw_artist(artist)
      fig.draw_artist(title)
      pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3]  # (REPORT_DPI * inches) rows and columns
      with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")
  finally:
    plt.close(fig)


def top_gallery(queries, residual_maps, titles, path: str, vmax: float, run_size: int, heading: str = "",
                columns: int = 5, residual_is_error: bool = True) -> None:
  """The given images (the most anomalous, in order) as a grid of residual-over-query panels,
  `columns` per row, each titled (rank, name, score, decision), under `heading`, with the colour
  bar 0..`vmax` of the run's `run_size` reports."""
  queries, residuals = to_display(queries), np.asarray(residual_maps).mean(axis=-1)
  n = len(queries)
  cols = min(columns, n)
  rows = -(-n // cols)
  fig = plt.figure(figsize=(2.1 * cols + 0.8, 2.6 * rows))
  grid = fig.add_gridspec(rows, cols + 1, width_ratios=(1,) * cols + (0.07,), wspace=0.12, hspace=0.45)
  for i in range(n):
    ax = fig.add_subplot(grid[i // cols, i % cols])
    _overlay(ax, queries[i], residuals[i], vmax)
    _bare(ax)
    ax.set_title(titles[i], fontsize=7)
  _colour_bar(fig, fig.add_subplot(grid[:, cols]), vmax, run_size, residual_is_error)
  if heading:
    fig.suptitle(heading, fontsize=9)
  save_figure(fig, path)
