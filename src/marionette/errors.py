"""The one exception type a user sees: bad input, reported as a single line naming the file."""


class InputError(Exception):
    """Bad user input (missing file, corrupt video, no face, wrong size). The message is one line."""


def os_error(e: OSError) -> str:
    """One line for a failed file operation: `PATH: why` (disk full, read-only, not a directory, ...)."""
    why = e.strerror or (str(e).splitlines() or [type(e).__name__])[0]
    return f"{e.filename}: {why}" if e.filename is not None else why


def check_finite(tensors: dict, path: object) -> None:
    """InputError naming `path` if any floating-point tensor (numpy or torch) holds NaN or inf."""
    import numpy as np

    for name, tensor in tensors.items():
        values = np.asarray(tensor.float() if hasattr(tensor, "float") and callable(tensor.float) else tensor)
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            raise InputError(f"{path}: holds non-finite weights (NaN or inf) in {name}; the file is damaged")
