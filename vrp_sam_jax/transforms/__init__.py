"""Pure transforms of images, masks and annotations, shared by training, evaluation and
inference: resizing to and from the model grid (`preprocess`), reference annotations simulated
from a ground-truth mask or rasterised from a person's input (`conditions`), and a person's
annotation as the command line and the app take it (`annotations`)."""
