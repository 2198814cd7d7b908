"""Evaluation: the field's metric, the shared evaluation step, the episode loop, fold
evaluation and its report. Takes models and step functions; never imports the trainer."""
