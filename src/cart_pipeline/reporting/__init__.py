"""Presentation, kept out of the method in core/: the HTML report and the recall chart that the
evaluation stage and the ablation runner both draw."""
