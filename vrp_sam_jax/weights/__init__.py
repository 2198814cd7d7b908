"""Weights in other people's layouts, and our converted directories: the release's
`best_model.pt` (read and written), PSPNet/torchvision backbone files, and `vrp.json` +
orbax directories (`vrp-sam export` / `convert-vrp`). `model_io.load` decides which to read."""
