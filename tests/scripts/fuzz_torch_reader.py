"""Feed mutations of a small valid `.pth` to the reader under a memory limit; print one JSON
line: how many mutations loaded, how many were refused with a CheckpointError, and any other
outcome (which must not happen). A crash or a hang shows as the process's own failure.

    python fuzz_torch_reader.py GOOD.pth WORKDIR COUNT SEED
"""

import json
import random
import resource
import sys
import traceback
import zipfile
from pathlib import Path

import numpy as np

from sam_port.torch_pickle import CheckpointError, load_state_dict

LIMIT = 3 << 30  # address space: the reader must refuse, not allocate, absurd sizes
resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))

good, work, count, seed = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
raw = good.read_bytes()
with zipfile.ZipFile(good) as z:
    members = {info.filename: z.read(info) for info in z.infolist()}
pkl_name = next(n for n in members if n.endswith("data.pkl"))


def rezip(files: dict) -> bytes:
    path = work / "rezip.pth"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path.read_bytes()


def mutate_pickle(data: bytes) -> bytes:
    """Overwrite the argument of a few integer opcodes (sizes, strides, offsets, numels, memo
    indices) with extreme or random values."""
    out = bytearray(data)
    spots = [i for i, b in enumerate(out[:-5]) if b in (0x4A, 0x4B, 0x4D, 0x71, 0x72)]
    for i in rng.sample(spots, min(len(spots), rng.randint(1, 3))):
        value = rng.choice([0, 1, 2**31 - 1, -1, -(2**31), rng.randint(-1000, 10**9)])
        if out[i] in (0x4A, 0x72):  # BININT, LONG_BINPUT: 4 bytes
            out[i + 1 : i + 5] = (value & 0xFFFFFFFF).to_bytes(4, "little")
        elif out[i] == 0x4D:  # BININT2
            out[i + 1 : i + 3] = (value & 0xFFFF).to_bytes(2, "little")
        else:  # BININT1, BINPUT
            out[i + 1] = value & 0xFF
    return bytes(out)


def mutation(k: int) -> bytes:
    kind = k % 5
    if kind == 0:  # bit flips anywhere
        out = bytearray(raw)
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(out))
            out[i] ^= 1 << rng.randrange(8)
        return bytes(out)
    if kind == 1:  # truncation
        return raw[: rng.randrange(len(raw))]
    if kind == 2:  # random bytes over a random span
        out = bytearray(raw)
        i = rng.randrange(len(out))
        out[i : i + rng.randint(1, 64)] = bytes(rng.randrange(256) for _ in range(64))
        return bytes(out[: len(raw)])
    if kind == 3:  # sizes, strides, offsets and memo indices inside a well-formed zip
        return rezip({**members, pkl_name: mutate_pickle(members[pkl_name])})
    storages = [n for n in members if "/data/" in n]  # storages cut short or grown
    victim = rng.choice(storages)
    data = members[victim]
    cut = data[: rng.randrange(len(data))] if rng.random() < 0.5 else data * 3
    return rezip({**members, victim: cut})


loaded = refused = 0
others = []
for k in range(count):
    path = work / "mutant.pth"
    path.write_bytes(mutation(k))
    try:
        state = load_state_dict(path)
        assert all(isinstance(v, np.ndarray) for v in state.values())
        loaded += 1
    except CheckpointError as e:
        assert str(path) in str(e) and "\n" not in str(e), str(e)
        refused += 1
    except BaseException as e:  # noqa: BLE001 - reported, must not happen
        others.append(f"mutation {k}: {type(e).__name__}: {e} "
                      f"{traceback.format_exc().splitlines()[-3:]}")
print(json.dumps({"loaded": loaded, "refused": refused, "others": others[:5],
                  "other_count": len(others)}))
