"""How JAX runs the work: the device mesh and how arrays lie on it (`sharding`), the
multi-controller runtime and which process writes (`processes`), and the persistent
compilation cache (`compile_cache`). Imports nothing of the model or the data."""
