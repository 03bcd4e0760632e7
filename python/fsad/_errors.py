"""fsad's exceptions: one per status of the C ABI (include/fsad/fsad.h), the message is the C++ one."""


class FsadError(RuntimeError):
    """Base of every error fsad raises; ``status`` is the C ABI's status code."""
    status = 8


class ArgumentError(FsadError, ValueError):
    """A bad argument, image or configuration (FSAD_ERR_ARGUMENT)."""
    status = 1


class FileError(FsadError, OSError):
    """A file could not be read, decoded or written (FSAD_ERR_IO)."""
    status = 2


class FormatError(FileError):
    """A model file is malformed, of another version, or was modified (FSAD_ERR_FORMAT)."""
    status = 3


class StateError(FsadError):
    """The call does not fit the detector's state, e.g. scoring before fit (FSAD_ERR_STATE)."""
    status = 4


class Cancelled(FsadError):
    """The progress callback stopped fit; the detector is unchanged (FSAD_ERR_CANCELLED)."""
    status = 5


class DeviceError(FsadError):
    """The device is missing or failed (FSAD_ERR_DEVICE)."""
    status = 6


BY_STATUS = {c.status: c for c in (ArgumentError, FileError, FormatError, StateError, Cancelled, DeviceError)}
BY_STATUS[7] = MemoryError
