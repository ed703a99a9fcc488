"""Reader for PyTorch's legacy (pre-1.6, non-zip) checkpoint format, without torch.

The EfficientNet-Lite0 weights ship as such a file: a sequence of pickles
(magic number, protocol version, system info, the state dict whose tensors
refer to storages by key, the list of storage keys) followed by the raw
storages, each an int64 element count and little-endian data.
"""

import collections
import pickle

import numpy as np

_MAGIC = 0x1950A86A20F9469CFC6C
_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _TensorRef:
    def __init__(self, key, offset, size, stride):
        self.key, self.offset, self.size, self.stride = key, offset, size, stride


def _rebuild_tensor_v2(storage, offset, size, stride, *_rest):
    return _TensorRef(storage, offset, tuple(size), tuple(stride))


class _Unpickler(pickle.Unpickler):
    def __init__(self, f, storages):
        super().__init__(f)
        self.storages = storages

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _DTYPES:
            return name
        raise pickle.UnpicklingError(f"unexpected global {module}.{name} in checkpoint")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, numel = pid[:5]
        if kind != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        self.storages.setdefault(key, (storage_type, numel))
        return key


def load_state_dict(path):
    """Return the checkpoint's state dict as {name: numpy array}."""
    with open(path, "rb") as f:
        if pickle.load(f) != _MAGIC:
            raise ValueError(f"{path}: not a legacy PyTorch checkpoint (bad magic number)")
        pickle.load(f)  # protocol version
        pickle.load(f)  # sys info
        storages = {}
        refs = _Unpickler(f, storages).load()
        keys = pickle.load(f)
        data = {}
        for key in keys:
            storage_type, _numel = storages[key]
            dtype = np.dtype(_DTYPES[storage_type])
            count = int(np.frombuffer(f.read(8), dtype="<i8")[0])
            data[key] = np.frombuffer(f.read(count * dtype.itemsize), dtype=dtype.newbyteorder("<"))
    out = collections.OrderedDict()
    for name, ref in refs.items():
        base = data[ref.key]
        itemsize = base.dtype.itemsize
        arr = np.lib.stride_tricks.as_strided(
            base[ref.offset:], shape=ref.size, strides=tuple(s * itemsize for s in ref.stride)
        )
        out[name] = np.array(arr, dtype=np.float32 if base.dtype.kind == "f" else base.dtype)
    return out
