"""Load converted weights with PyTorch made unimportable; prints "ok" when they are right.

    python load_without_torch.py sam DIR REF.npz   # a converted SAM equals its state dict
    python load_without_torch.py vrp DIR           # an exported VRP-SAM directory loads whole
"""

import sys

sys.modules["torch"] = None  # any import of torch now fails

import numpy as np  # noqa: E402

import sam_port  # noqa: E402
from sam_port.convert import params_to_state_dict  # noqa: E402

kind, directory = sys.argv[1], sys.argv[2]
if kind == "sam":
    sam = sam_port.load_sam(directory, "tiny")
    ref = np.load(sys.argv[3])
    got = params_to_state_dict(sam.params)
    assert set(got) == set(ref.files)
    assert all(np.array_equal(got[k], ref[k]) for k in ref.files)
else:
    from vrp_sam_jax import model_io

    model = model_io.load(directory)
    assert set(model.params) == {"backbone", "encoder", "sam"}, model.params.keys()
print("ok")
