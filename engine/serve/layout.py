"""The shared-memory region of ``agentloop serve``, ABI version 1 (docs/abi.md): the header as
a ctypes structure, the one definition the server and the Python client share
(``include/agentloop_abi.h`` is its C twin, and a test compares the two), the names a server
of a given name uses, and where each array lies."""

from __future__ import annotations

import ctypes
import dataclasses
import re

import numpy as np

from engine.errors import ServeError
from engine.runtime.shm import PREFIX

MAGIC = b"AGNTLOOP"
ABI_VERSION = 1
HEADER_BYTES = 512
#: every array starts at a multiple of this many bytes from the region's start
ALIGN = 64
MESSAGE_BYTES = 256

#: element types named in the header
DTYPE_INT64, DTYPE_UINT8, DTYPE_UINT32 = 1, 2, 3
#: ``server_state``
SERVER_CREATING, SERVER_READY, SERVER_CLOSED = 0, 1, 2
#: ``client_state``
CLIENT_NONE, CLIENT_ATTACHED, CLIENT_DETACHED = 0, 1, 2
#: ``command``: what the client asks for when it posts ``go``
COMMAND_NONE, COMMAND_STEP, COMMAND_DETACH = 0, 1, 2
#: ``status``: how the server answered the last request
STATUS_OK, STATUS_BAD_OBSERVATIONS, STATUS_SERVER_ERROR = 0, 1, 2

DEFAULT_NAME = "main"
NAME_PATTERN = re.compile(r"[A-Za-z0-9_]{1,64}")
#: the short names, after ``agentloop-<name>-``, of the region and the two semaphores
REGION, GO, DONE, MANIFEST = "serve", "go", "done", "manifest"


class Header(ctypes.Structure):
    """The first :data:`HEADER_BYTES` bytes of the region (natural alignment, host byte
    order). Field order and types are the ABI: append, never reorder."""

    _fields_ = [
        ("magic", ctypes.c_char * 8),
        ("abi_version", ctypes.c_uint32),
        ("header_bytes", ctypes.c_uint32),
        ("region_bytes", ctypes.c_uint64),
        ("n_agents", ctypes.c_uint64),
        ("n_modalities", ctypes.c_uint32),
        ("n_factors", ctypes.c_uint32),
        ("obs_dtype", ctypes.c_uint32),
        ("action_dtype", ctypes.c_uint32),
        ("num_obs_offset", ctypes.c_uint64),
        ("num_actions_offset", ctypes.c_uint64),
        ("obs_offset", ctypes.c_uint64),
        ("actions_offset", ctypes.c_uint64),
        ("stale_offset", ctypes.c_uint64),
        ("seed", ctypes.c_uint64),
        ("budget_s", ctypes.c_double),
        ("server_state", ctypes.c_uint32),
        ("client_state", ctypes.c_uint32),
        ("server_pid", ctypes.c_int64),
        ("client_pid", ctypes.c_int64),
        ("command", ctypes.c_uint32),
        ("status", ctypes.c_uint32),
        ("request_seq", ctypes.c_uint64),
        ("reply_seq", ctypes.c_uint64),
        ("tick", ctypes.c_uint64),
        ("ticks_done", ctypes.c_uint64),
        ("wall_s", ctypes.c_double),
        ("stale_agents", ctypes.c_uint64),
        ("level", ctypes.c_int32),
        ("reserved0", ctypes.c_uint32),
        ("reserved", ctypes.c_uint8 * 64),
        ("message", ctypes.c_char * MESSAGE_BYTES),
    ]


assert ctypes.sizeof(Header) == HEADER_BYTES


def check_name(name: str) -> str:
    """``name`` if it can name a server (1 to 64 of ``A-Z a-z 0-9 _``), else ServeError."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ServeError(f"server name {name!r}: use 1 to 64 letters, digits or '_'")
    return name


def shm_name(name: str, short: str) -> str:
    """The POSIX name (leading slash) of a server's region, semaphore or manifest; semaphores
    appear in /dev/shm as ``sem.`` plus the name without the slash."""
    return f"/{PREFIX}{check_name(name)}-{short}"


def _aligned(offset: int) -> int:
    return (offset + ALIGN - 1) // ALIGN * ALIGN


@dataclasses.dataclass(frozen=True)
class RegionLayout:
    """Sizes and byte offsets of the region's arrays (from :meth:`for_shape` or a header)."""

    n_agents: int
    n_modalities: int
    n_factors: int
    num_obs_offset: int
    num_actions_offset: int
    obs_offset: int
    actions_offset: int
    stale_offset: int
    region_bytes: int

    @classmethod
    def for_shape(cls, n_agents: int, n_modalities: int, n_factors: int) -> RegionLayout:
        """The layout the server writes: header, ``num_obs`` (uint32, M), ``num_actions``
        (uint32, F), ``obs`` (int64, n x M), ``actions`` (int64, n x F), ``stale`` (uint8, n),
        each aligned to :data:`ALIGN` bytes."""
        num_obs = HEADER_BYTES
        num_actions = _aligned(num_obs + 4 * n_modalities)
        obs = _aligned(num_actions + 4 * n_factors)
        actions = _aligned(obs + 8 * n_agents * n_modalities)
        stale = _aligned(actions + 8 * n_agents * n_factors)
        return cls(n_agents, n_modalities, n_factors, num_obs, num_actions, obs, actions, stale,
                   _aligned(stale + n_agents))

    @classmethod
    def from_header(cls, header: Header, mapped_bytes: int, where: str) -> RegionLayout:
        """The layout a header describes, checked against its ABI and the ``mapped_bytes`` the
        region holds; ServeError naming ``where`` otherwise."""
        if header.magic != MAGIC:
            raise ServeError(f"{where}: not an agentloop serve region (magic "
                             f"{bytes(header.magic)!r})")
        if header.abi_version != ABI_VERSION or header.header_bytes != HEADER_BYTES:
            raise ServeError(f"{where}: ABI version {header.abi_version} (header "
                             f"{header.header_bytes} bytes); this client speaks version "
                             f"{ABI_VERSION} ({HEADER_BYTES} bytes)")
        if header.obs_dtype != DTYPE_INT64 or header.action_dtype != DTYPE_INT64:
            raise ServeError(f"{where}: observation/action dtypes {header.obs_dtype}/"
                             f"{header.action_dtype}; this client reads int64 ({DTYPE_INT64})")
        layout = cls(int(header.n_agents), int(header.n_modalities), int(header.n_factors),
                     int(header.num_obs_offset), int(header.num_actions_offset),
                     int(header.obs_offset), int(header.actions_offset),
                     int(header.stale_offset), int(header.region_bytes))
        expected = cls.for_shape(layout.n_agents, layout.n_modalities, layout.n_factors)
        if layout != expected or layout.region_bytes > mapped_bytes:
            raise ServeError(f"{where}: header offsets or sizes are inconsistent (region "
                             f"{layout.region_bytes} bytes, {mapped_bytes} mapped)")
        return layout

    def write(self, header: Header) -> None:
        """Fill the header's shape, dtype and offset fields."""
        header.abi_version = ABI_VERSION
        header.header_bytes = HEADER_BYTES
        header.region_bytes = self.region_bytes
        header.n_agents = self.n_agents
        header.n_modalities = self.n_modalities
        header.n_factors = self.n_factors
        header.obs_dtype = header.action_dtype = DTYPE_INT64
        header.num_obs_offset = self.num_obs_offset
        header.num_actions_offset = self.num_actions_offset
        header.obs_offset = self.obs_offset
        header.actions_offset = self.actions_offset
        header.stale_offset = self.stale_offset

    def views(self, buffer: np.ndarray) -> RegionViews:
        """The arrays inside ``buffer`` (the whole region as uint8)."""
        n, m, f = self.n_agents, self.n_modalities, self.n_factors

        def at(offset: int, count: int, dtype: type) -> np.ndarray:
            size = count * np.dtype(dtype).itemsize
            return buffer[offset:offset + size].view(dtype)

        return RegionViews(
            num_obs=at(self.num_obs_offset, m, np.uint32),
            num_actions=at(self.num_actions_offset, f, np.uint32),
            obs=at(self.obs_offset, n * m, np.int64).reshape(n, m),
            actions=at(self.actions_offset, n * f, np.int64).reshape(n, f),
            stale=at(self.stale_offset, n, np.uint8))


@dataclasses.dataclass(frozen=True)
class RegionViews:
    """NumPy views of the region's arrays (agent axis first)."""

    num_obs: np.ndarray
    num_actions: np.ndarray
    obs: np.ndarray
    actions: np.ndarray
    stale: np.ndarray


def message_of(header: Header) -> str:
    """The server's one-line message for the last request (empty when none)."""
    return bytes(header.message).split(b"\0", 1)[0].decode("utf-8", "replace")


def set_message(header: Header, text: str) -> None:
    """Store ``text`` as the header's message: one line, cut to fit with its terminating 0."""
    data = " ".join(text.split()).encode("utf-8")[:MESSAGE_BYTES - 1]
    header.message = data.decode("utf-8", "ignore").encode("utf-8")
