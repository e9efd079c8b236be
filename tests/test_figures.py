"""Figures render off-screen with the content the study looked at."""

from __future__ import annotations

import io

import numpy as np

from mnist_tracking.ml import figures


def test_learning_curves_plot_train_and_validation():
    fig = figures.learning_curves(
        {"accuracy": [0.8, 0.9], "val_accuracy": [0.7, 0.85], "loss": [1.0, 0.5], "val_loss": [1.1, 0.6]}
    )
    acc, loss = fig.axes[:2]
    assert [line.get_label() for line in acc.lines] == ["train", "validation"]
    assert list(acc.lines[1].get_ydata()) == [0.7, 0.85] and list(loss.lines[0].get_xdata()) == [1, 2]


def test_misclassified_captions_name_true_predicted_and_probability():
    images = np.zeros((4, 28, 28))
    labels = np.array([1, 2, 3, 4])
    probs = np.full((4, 10), 0.01)
    probs[[0, 1, 2, 3], [1, 7, 3, 9]] = [0.9, 0.6, 0.8, 0.55]  # digits 1 and 3 are wrong
    fig = figures.misclassified(images, labels, probs)
    assert [text.get_text() for text in fig.axes[0].texts] == ["true 2 → pred 7\np=0.60", "true 4 → pred 9\np=0.55"]
    assert fig.axes[0].images[0].get_array().shape[1] == 5 * 32  # the wrong digits, tiled five to a row


def test_confusion_matrix_counts():
    fig = figures.confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]))
    counts = fig.axes[0].images[0].get_array()
    assert counts[0, 0] == 1 and counts[0, 1] == 1 and counts.sum() == 4


def test_a_sweep_of_many_jobs_draws_every_curve_but_labels_them_only_when_few():
    few = figures.sweep_curves({f"seed={i}": [0.5, 0.6] for i in range(3)}, "val_accuracy", "sweep")
    many = figures.sweep_curves({f"seed={i}": [0.5, 0.6] for i in range(200)}, "val_accuracy", "sweep")
    [ax_few], [ax_many] = few.axes, many.axes
    assert [t.get_text() for t in ax_few.get_legend().get_texts()] == ["seed=0", "seed=1", "seed=2"]
    assert len(ax_many.lines) == 200 and ax_many.get_legend() is None
    assert "200 curves, unlabeled" in ax_many.get_title()
    many.savefig(io.BytesIO())  # lays out and renders
