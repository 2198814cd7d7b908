"""Few-shot data: fold definitions, the field's split lists, and episode protocols."""
