"""Figures as PNG data URIs: images, cosine-similarity heatmaps (seaborn) and t-SNE (sklearn)."""

from __future__ import annotations

import base64
import io

import numpy as np
import seaborn as sns
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits

DPI = 110
ANNOTATE_UP_TO = 10      # heatmaps with at most this many columns print their values


def png_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def image_uri(image: torch.Tensor) -> str:
    """A uint8 3×H×W image as a PNG data URI."""
    buffer = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).contiguous().numpy()).save(buffer, format="png")
    return png_data_uri(buffer.getvalue())


def figure_uri(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return png_data_uri(buffer.getvalue())


def identity_centroids(features: torch.Tensor, labels: torch.Tensor,
                       classes: list[int]) -> torch.Tensor:
    """The normalised mean feature of each class in ``classes`` (rows in that order)."""
    means = torch.stack([features[labels == c].mean(0) for c in classes])
    return torch.nn.functional.normalize(means, dim=1)


def similarity_heatmap(similarity: np.ndarray, rows: list[int], columns: list[int],
                       title: str) -> str:
    """Generated identity (rows) × private identity (columns); true pairs outlined."""
    height = 1.2 + 0.32 * len(rows)
    width = 1.8 + 0.32 * len(columns)
    figure = Figure(figsize=(max(width, 3.4), max(height, 2.2)))
    ax = figure.subplots()
    annotate = len(columns) <= ANNOTATE_UP_TO
    sns.heatmap(similarity, ax=ax, cmap="viridis", annot=annotate, fmt=".2f",
                annot_kws={"fontsize": 7}, xticklabels=columns, yticklabels=rows,
                cbar_kws={"label": "cosine similarity", "shrink": 0.8}, square=True)
    for i, label in enumerate(rows):
        if label in columns:
            ax.add_patch(Rectangle((columns.index(label), i), 1, 1, fill=False,
                                   edgecolor="#ff3b30", linewidth=1.6))
    ax.set_xlabel("private identity")
    ax.set_ylabel("generated identity")
    ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=7, rotation=0)
    return figure_uri(figure)


def tsne_figure(private: tuple[np.ndarray, np.ndarray],
                generated: list[tuple[str, np.ndarray, np.ndarray]], seed: int = 0) -> str:
    """One joint t-SNE of private and generated embeddings, one panel per generated set.

    ``private`` is (features, labels); each ``generated`` entry is (title, features, labels).
    Private images are faint dots, generated ones crosses, coloured by identity.
    """
    features = np.concatenate([private[0], *(g[1] for g in generated)])
    perplexity = float(max(2.0, min(30.0, (len(features) - 1) / 3)))
    # One thread: with torch loaded, two OpenMP runtimes contend and a busy machine slows
    # Barnes-Hut t-SNE from milliseconds to a minute (measured); the point count is small.
    with threadpool_limits(limits=1):
        points = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                      metric="cosine").fit_transform(features)
    classes = sorted(set(private[1].tolist()))
    palette = dict(zip(classes, sns.color_palette("tab10", len(classes))))
    private_points, offset = points[:len(private[0])], len(private[0])
    columns = min(3, len(generated))
    rows = -(-len(generated) // columns)
    figure = Figure(figsize=(3.6 * columns + 1.2, 3.4 * rows))
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    for ax, (title, feats, labels) in zip(axes, generated):
        mine = points[offset:offset + len(feats)]
        offset += len(feats)
        for c in classes:
            ax.scatter(*private_points[private[1] == c].T, s=16, alpha=0.5, color=palette[c])
            ax.scatter(*mine[labels == c].T, s=46, marker="X", color=palette[c],
                       edgecolors="black", linewidths=0.5)
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[len(generated):]:
        ax.set_axis_off()
    handles = [axes[0].scatter([], [], s=46, marker="X", color=palette[c], edgecolors="black",
                               linewidths=0.5, label=f"identity {c}") for c in classes]
    handles += [axes[0].scatter([], [], s=14, color="grey", alpha=0.5, label="private image"),
                axes[0].scatter([], [], s=46, marker="X", color="grey", edgecolors="black",
                                linewidths=0.5, label="generated image")]
    figure.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8,
                  frameon=False)
    figure.tight_layout()
    return figure_uri(figure)
