"""IDX reader (the MNIST / Fashion-MNIST file format), gzipped or not, with exact size and checksum checks.

Format (LeCun et al., http://yann.lecun.com/exdb/mnist/): bytes 0-1 are zero, byte 2 is the element type
(0x08 = uint8, the only type these datasets use), byte 3 the number of dimensions d, then d big-endian
uint32 sizes, then prod(sizes) elements, nothing after. A file that breaks any of that is corrupt.
"""
import gzip
import hashlib
import struct
import zlib
from pathlib import Path

import numpy as np
import torch


def read_bytes(path):
    """The file's content, transparently gunzipped; a truncated or corrupt gzip raises a one-line ValueError."""
    path = Path(path)
    raw = path.read_bytes()
    if not path.name.endswith(".gz"):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{path}: corrupt or truncated gzip file ({e})") from None


def parse_idx(content, path="<bytes>", expected_sha256=None):
    """Parse IDX bytes into a uint8 tensor; checks header, exact length and (if given) the sha256 of `content`."""
    if expected_sha256:
        digest = hashlib.sha256(content).hexdigest()
        if digest != expected_sha256:
            raise ValueError(f"{path}: sha256 of the uncompressed IDX is {digest}, expected {expected_sha256}; "
                             "the file is corrupt or not the official one")
    if len(content) < 4 or content[0] != 0 or content[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    if content[2] != 0x08:
        raise ValueError(f"{path}: IDX element type 0x{content[2]:02x} is not uint8 (0x08)")
    ndim = content[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(content) < header:
        raise ValueError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", content[4:header])
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(content) != expected:
        raise ValueError(f"{path}: IDX size {len(content)} bytes, header {dims} needs {expected}; "
                         "the file is truncated or corrupt")
    array = np.frombuffer(content, dtype=np.uint8, offset=header).reshape(dims)
    return torch.from_numpy(array.copy())


def read_idx(path, expected_sha256=None):
    """Read an IDX file (`.gz` or plain) into a uint8 tensor shaped as its header says."""
    return parse_idx(read_bytes(path), path, expected_sha256)
