"""The IDX format that every data set comes in: parsed strictly (magic number, dimensions, size, label
range), as the study's 28x28 images and digit labels.
"""

import struct

import torch

IMAGE_SIDE = 28
NUM_FEATURES = IMAGE_SIDE * IMAGE_SIDE
NUM_CLASSES = 10
_IDX_UBYTE = 0x08


class DataError(RuntimeError):
    """A data file is missing, unreadable or not the expected MNIST content."""


def parse_idx(data, origin="<bytes>"):
    """Parse IDX bytes of unsigned bytes into a uint8 tensor, checking magic number, dimensions and size."""
    if len(data) < 4:
        raise DataError(f"{origin}: {len(data)} bytes, too short for an IDX header")
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != _IDX_UBYTE or ndim not in (1, 3):
        raise DataError(
            f"{origin}: bad IDX magic number 0x{data[:4].hex()}; expected 0x00000801 (labels) or 0x00000803 (images)"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{origin}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if ndim == 3 and dims[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise DataError(f"{origin}: images are {dims[1]}x{dims[2]}, expected {IMAGE_SIDE}x{IMAGE_SIDE}")
    count = 1
    for d in dims:
        count *= d
    if len(data) != header + count:
        raise DataError(
            f"{origin}: {len(data)} bytes, but the header {dims} implies {header + count} (truncated or padded)"
        )
    if count == 0:  # frombuffer refuses an empty buffer
        return torch.zeros(dims, dtype=torch.uint8)
    return torch.frombuffer(bytearray(data[header:]), dtype=torch.uint8).reshape(dims)


def read_pair(images_data, labels_data, images_path, labels_path):
    images = parse_idx(images_data, origin=str(images_path))
    labels = parse_idx(labels_data, origin=str(labels_path))
    if images.dim() != 3 or labels.dim() != 1:
        raise DataError(f"{images_path} must hold images and {labels_path} labels; they are swapped or wrong")
    if images.shape[0] == 0:
        raise DataError(f"{images_path} holds no image; a data set needs at least one training and one test image")
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{images_path} holds {images.shape[0]} images but {labels_path} {labels.shape[0]} labels")
    if labels.numel() and int(labels.max()) >= NUM_CLASSES:
        raise DataError(f"{labels_path}: label {int(labels.max())} is not a digit 0-9")
    return images.reshape(len(images), -1), labels.to(torch.int64)
