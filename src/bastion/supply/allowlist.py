"""Which callables a model file may import: an allowlist, with a fail-closed default.

A pickle stream runs code by importing a callable (``GLOBAL``, ``STACK_GLOBAL``, ``INST``,
extension codes) and calling it (``REDUCE``, ``NEWOBJ``, ``OBJ``, ``BUILD``). The peers decide
by denylist and have been bypassed by every name they never listed. Here a name is:

- **allowed** when it is on the list of callables that model files of scikit-learn, NumPy,
  pandas, PyTorch, XGBoost, LightGBM, joblib and the standard containers need (exact names,
  plus public-looking classes of those libraries' own packages);
- **dangerous** when it is a known code-execution gadget (it names the danger in the report);
- **unknown** otherwise: at least ``suspicious``. Users extend the list with their own classes,
  optionally pinned to the sha256 of the module file that defines them.

Nothing here imports the modules it judges.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["DANGEROUS_PREFIXES", "DEFAULT_ALLOWLIST", "Allowlist", "Classification", "is_dangerous"]

Classification = Literal["allowed", "dangerous", "unknown"]

# exact module.name pairs that model files of the supported libraries import
_EXACT: frozenset[str] = frozenset(
    {
        # builtins (py3 and py2 spellings)
        *(
            f"{mod}.{name}"
            for mod in ("builtins", "__builtin__")
            for name in (
                "set",
                "frozenset",
                "dict",
                "list",
                "tuple",
                "bytearray",
                "bytes",
                "complex",
                "slice",
                "range",
                "xrange",
                "object",
                "int",
                "float",
                "bool",
                "str",
                "unicode",
                "long",
                "NoneType",
                "Ellipsis",
                "NotImplemented",
            )
        ),
        "copyreg._reconstructor",
        "copy_reg._reconstructor",
        # protocols 0-2 write bytes as _codecs.encode(text, "latin1")
        "_codecs.encode",
        "copyreg.__newobj__",
        "copyreg.__newobj_ex__",
        "collections.OrderedDict",
        "collections.defaultdict",
        "collections.deque",
        "collections.Counter",
        "_collections.OrderedDict",
        "_collections.defaultdict",
        "_collections.deque",
        "datetime.datetime",
        "datetime.date",
        "datetime.time",
        "datetime.timedelta",
        "datetime.timezone",
        # tz-aware timestamps: Python pickles the classmethod as getattr(ZoneInfo, "_unpickle")
        "zoneinfo.ZoneInfo",
        "zoneinfo.ZoneInfo._unpickle",
        "decimal.Decimal",
        "fractions.Fraction",
        "uuid.UUID",
        "enum.Enum",
        # numpy (1.x and 2.x module paths)
        *(
            f"{core}.{name}"
            for core in ("numpy.core.multiarray", "numpy._core.multiarray")
            for name in ("_reconstruct", "scalar")
        ),
        "numpy.core.numeric._frombuffer",
        "numpy._core.numeric._frombuffer",
        "numpy.ndarray",
        "numpy.dtype",
        "numpy.ma.core._mareconstruct",
        "numpy.ma.core.MaskedArray",
        "numpy.ma.MaskedArray",
        # Cython helpers of sklearn's trees: newObj(cls) is cls.__new__(cls)
        "sklearn.neighbors._kd_tree.newObj",
        "sklearn.neighbors._ball_tree.newObj",
        "sklearn.metrics._dist_metrics.newObj",
        "numpy.random._pickle.__randomstate_ctor",
        "numpy.random._pickle.__bit_generator_ctor",
        "numpy.random._pickle.__generator_ctor",
        "numpy.random.bit_generator.SeedSequence",
        "numpy.random.bit_generator.__pyx_unpickle_SeedSequence",
        "numpy.random._mt19937.MT19937",
        "numpy.random._pcg64.PCG64",
        "numpy.random._pcg64.PCG64DXSM",
        "numpy.random._philox.Philox",
        "numpy.random._sfc64.SFC64",
        "numpy.random.mtrand.RandomState",
        "numpy.random._generator.Generator",
        # joblib's array wrappers (the data that follows them is read as raw bytes)
        "joblib.numpy_pickle.NumpyArrayWrapper",
        "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper",
        # pandas internals used by DataFrame / Series / Index pickles
        "pandas._libs.internals._unpickle_block",
        "pandas._libs.arrays.__pyx_unpickle_NDArrayBacked",
        "pandas.core.indexes.base._new_Index",
        "pandas.core.internals.managers.BlockManager",
        "pandas.core.internals.managers.SingleBlockManager",
        "pandas._libs.tslibs.timestamps._unpickle_timestamp",
        "pandas._libs.tslibs.timedeltas._timedelta_unpickle",
        "pandas._libs.tslibs.nattype.__nat_unpickle",
        "pandas._libs.tslibs.offsets._offset_map",
        "pandas.core.arrays.categorical._recode_for_categories",
        # pyarrow-backed pandas columns
        "pyarrow.lib._restore_array",
        "pyarrow.lib.py_buffer",
        "pyarrow.lib.type_for_alias",
        "pyarrow.lib.schema",
        "pyarrow.lib.field",
        # torch rebuild helpers (the torch.save formats); storages arrive as persistent ids
        *(
            f"torch._utils.{name}"
            for name in (
                "_rebuild_tensor",
                "_rebuild_tensor_v2",
                "_rebuild_tensor_v3",
                "_rebuild_parameter",
                "_rebuild_parameter_with_state",
                "_rebuild_qtensor",
                "_rebuild_sparse_tensor",
                "_rebuild_nested_tensor",
                "_rebuild_device_tensor_from_numpy",
                "_rebuild_meta_tensor_no_storage",
                "_rebuild_wrapper_subclass",
            )
        ),
        "torch._tensor._rebuild_from_type",
        "torch._tensor._rebuild_from_type_v2",
        "torch.serialization._get_layout",
        "torch.Size",
        "torch.device",
        "torch.Tensor",
        "torch.nn.parameter.Parameter",
        "torch.nn.parameter.Buffer",
        "torch.storage.UntypedStorage",
        "torch.storage.TypedStorage",
        "torch.storage._TypedStorage",
        "torch.storage._UntypedStorage",
        *(
            f"torch.{name}"
            for name in (
                "float16",
                "float32",
                "float64",
                "bfloat16",
                "half",
                "float",
                "double",
                "complex64",
                "complex128",
                "uint8",
                "int8",
                "int16",
                "int32",
                "int64",
                "bool",
                "float8_e4m3fn",
                "float8_e5m2",
                "qint8",
                "quint8",
                "qint32",
                "contiguous_format",
                "channels_last",
                "preserve_format",
                "strided",
                "sparse_coo",
                "per_tensor_affine",
                "per_channel_affine",
            )
        ),
    }
)

# NumPy ufuncs and scalar types, which model files hold as values (FunctionTransformer(np.log1p)
# stores a ufunc; scalars pickle their type); they compute on arrays and touch nothing else
_NUMPY_VALUES: frozenset[str] = frozenset(
    (
        "abs",
        "absolute",
        "acos",
        "acosh",
        "add",
        "arccos",
        "arccosh",
        "arcsin",
        "arcsinh",
        "arctan",
        "arctan2",
        "arctanh",
        "asin",
        "asinh",
        "atan",
        "atan2",
        "atanh",
        "bitwise_and",
        "bitwise_count",
        "bitwise_invert",
        "bitwise_left_shift",
        "bitwise_not",
        "bitwise_or",
        "bitwise_right_shift",
        "bitwise_xor",
        "cbrt",
        "ceil",
        "conj",
        "conjugate",
        "copysign",
        "cos",
        "cosh",
        "deg2rad",
        "degrees",
        "divide",
        "divmod",
        "equal",
        "exp",
        "exp2",
        "expm1",
        "fabs",
        "float_power",
        "floor",
        "floor_divide",
        "fmax",
        "fmin",
        "fmod",
        "frexp",
        "gcd",
        "greater",
        "greater_equal",
        "heaviside",
        "hypot",
        "invert",
        "isfinite",
        "isinf",
        "isnan",
        "isnat",
        "lcm",
        "ldexp",
        "left_shift",
        "less",
        "less_equal",
        "log",
        "log10",
        "log1p",
        "log2",
        "logaddexp",
        "logaddexp2",
        "logical_and",
        "logical_not",
        "logical_or",
        "logical_xor",
        "matmul",
        "matvec",
        "maximum",
        "minimum",
        "mod",
        "modf",
        "multiply",
        "negative",
        "nextafter",
        "not_equal",
        "positive",
        "pow",
        "power",
        "rad2deg",
        "radians",
        "reciprocal",
        "remainder",
        "right_shift",
        "rint",
        "sign",
        "signbit",
        "sin",
        "sinh",
        "spacing",
        "sqrt",
        "square",
        "subtract",
        "tan",
        "tanh",
        "true_divide",
        "trunc",
        "vecdot",
        "vecmat",
        "bool",
        "bool_",
        "byte",
        "bytes_",
        "cdouble",
        "character",
        "clongdouble",
        "complex128",
        "complex256",
        "complex64",
        "complexfloating",
        "csingle",
        "datetime64",
        "double",
        "flexible",
        "float128",
        "float16",
        "float32",
        "float64",
        "floating",
        "generic",
        "half",
        "inexact",
        "int16",
        "int32",
        "int64",
        "int8",
        "int_",
        "intc",
        "integer",
        "intp",
        "long",
        "longdouble",
        "longlong",
        "number",
        "object_",
        "record",
        "short",
        "signedinteger",
        "single",
        "str_",
        "timedelta64",
        "ubyte",
        "uint",
        "uint16",
        "uint32",
        "uint64",
        "uint8",
        "uintc",
        "uintp",
        "ulong",
        "ulonglong",
        "unsignedinteger",
        "ushort",
        "void",
    )
)

# packages whose public-looking classes (CamelCase names, any submodule) model files import:
# constructing or restoring one of these stores state and runs no caller-supplied code
_CLASS_PACKAGES: tuple[str, ...] = (
    "sklearn.",
    "xgboost.",
    "lightgbm.",
    "catboost.",
    "imblearn.",
    "pandas.",
    "torch.nn.modules.",
    "torch.ao.nn.",
)
_TORCH_STORAGE = re.compile(r"^torch\.(cuda\.)?[A-Z][A-Za-z]*Storage$")
_CAMEL = re.compile(r"^_{0,2}[A-Z][A-Za-z0-9_]*$")
_SEGMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# known code-execution gadgets: a module prefix (matched on segment boundaries) or an exact
# name; they make a file "unsafe" rather than "suspicious" and the report names them
DANGEROUS_PREFIXES: tuple[str, ...] = (
    "os",
    "posix",
    "nt",
    "subprocess",
    "_posixsubprocess",
    "_winapi",
    "sys",
    "runpy",
    "importlib",
    "imp",
    "pkgutil",
    "zipimport",
    "pickle",
    "_pickle",
    "cPickle",
    "pickletools",
    "marshal",
    "shelve",
    "dill",
    "cloudpickle",
    "code",
    "codeop",
    "pty",
    "socket",
    "_socket",
    "ssl",
    "http",
    "urllib",
    "urllib2",
    "requests",
    "httpx",
    "ftplib",
    "smtplib",
    "telnetlib",
    "xmlrpc",
    "webbrowser",
    "imaplib",
    "mailcap",
    "uuid._get_command_stdout",
    "uuid._popen",
    "logging.config",
    "torch.utils.collect_env",
    "torch.utils.bottleneck",
    "torch.distributed",
    "shutil",
    "tempfile",
    "glob",
    "io",
    "_io",
    "pathlib",
    "fileinput",
    "linecache",
    "ctypes",
    "_ctypes",
    "cffi",
    "types",
    "pdb",
    "bdb",
    "timeit",
    "trace",
    "profile",
    "cProfile",
    "doctest",
    "distutils",
    "setuptools",
    "pip",
    "site",
    "ensurepip",
    "venv",
    "pydoc",
    "idlelib",
    "lib2to3",
    "tkinter",
    "multiprocessing",
    "concurrent",
    "asyncio",
    "threading",
    "_thread",
    "signal",
    "platform",
    "commands",
    "popen2",
    "inspect",
    "operator",
    "_operator",
    "functools",
    "_functools",
    "gc",
    "sqlite3",
    "dbm",
    "yaml",
    "jinja2",
    "numpy.load",
    "numpy.loadtxt",
    "numpy.genfromtxt",
    "numpy.fromfile",
    "numpy.save",
    "numpy.lib.npyio",
    "numpy.lib.format",
    "numpy.testing",
    "numpy.f2py",
    "numpy.distutils",
    "numpy.ctypeslib",
    "joblib.load",
    "joblib.dump",
    "joblib.numpy_pickle.load",
    "joblib.parallel",
    "pandas.read_pickle",
    "pandas.io",
    "pandas.eval",
    "pandas.core.computation",
    "torch.load",
    "torch.save",
    "torch.serialization.load",
    "torch.storage._load_from_bytes",
    "torch.hub",
    "torch.jit",
    "torch.package",
    "torch.utils.cpp_extension",
    "torch.ops",
    "torch._dynamo",
    "torch._inductor",
    "torch.export",
    "keras",
    "tensorflow",
    *(
        f"{mod}.{name}"
        for mod in ("builtins", "__builtin__")
        for name in (
            "eval",
            "exec",
            "execfile",
            "compile",
            "open",
            "file",
            "__import__",
            "getattr",
            "setattr",
            "delattr",
            "globals",
            "locals",
            "vars",
            "input",
            "raw_input",
            "breakpoint",
            "help",
            "exit",
            "quit",
            "__build_class__",
            "apply",
            "reload",
            "memoryview",
            "type",
            "super",
            "classmethod",
            "staticmethod",
            "property",
            "print",
            "dir",
            "map",
            "filter",
            "iter",
            "next",
        )
    ),
)


@dataclass(frozen=True)
class Allowlist:
    """The names a scan accepts.

    Attributes:
        extra: user additions: ``module.name`` strings, or a mapping ``module.name -> sha256``
            of the module file that must define it (checked by :meth:`pin_mismatch`).
        use_defaults: include the built-in list (off only for tests of the mechanism).

    Example::

        >>> allow = Allowlist.of(["mypkg.features.RatioTransformer"])
        >>> allow.classify("mypkg.features.RatioTransformer")
        'allowed'
        >>> allow.classify("os.system")
        'dangerous'
    """

    extra: frozenset[str] = frozenset()
    pins: Mapping[str, str] = field(default_factory=dict)
    use_defaults: bool = True

    @classmethod
    def of(cls, names: Iterable[str] | Mapping[str, str | None] = ()) -> Allowlist:
        """An allowlist extended with ``names`` (a mapping gives optional sha256 pins)."""
        if isinstance(names, Mapping):
            pins = {k: v.lower() for k, v in names.items() if v}
            return cls(extra=frozenset(names), pins=pins)
        return cls(extra=frozenset(names))

    def classify(self, qualname: str) -> Classification:
        """``allowed``, ``dangerous`` or ``unknown`` for a ``module.name`` string."""
        if is_dangerous(qualname):
            # a user's addition cannot make a known gadget safe
            return "dangerous"
        if qualname in self.extra:
            return "allowed"
        if self.use_defaults and _default_allowed(qualname):
            return "allowed"
        return "unknown"

    def classify_global(self, qualname: str, attribute_path: bool = False) -> Classification:
        """:meth:`classify` for an import whose name part is dotted (``attribute_path``):
        protocol 4 walks attributes from the module, so ``sklearn`` + ``logging.FileHandler``
        reaches the logging module. The package rules vouch for a package's own classes only:
        such a name is allowed when listed exactly, dangerous when any tail is a gadget."""
        kind = self.classify(qualname)
        if not attribute_path or kind == "dangerous":
            return kind
        parts = qualname.split(".")
        if any(is_dangerous(".".join(parts[i:])) for i in range(1, len(parts))):
            return "dangerous"
        if kind == "allowed" and qualname not in _EXACT and qualname not in self.extra:
            return "unknown"
        return kind

    def allows(self, qualname: str) -> bool:
        return self.classify(qualname) == "allowed"

    def pin_mismatch(self, qualname: str) -> str | None:
        """None when ``qualname`` has no pin or its module file matches the pin; else why
        not. Locating the module imports its parent packages (the user listed them)."""
        expected = self.pins.get(qualname)
        if expected is None:
            return None
        module = qualname.rpartition(".")[0]
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError) as err:
            return f"module {module!r} cannot be located: {err}"
        origin = getattr(spec, "origin", None) if spec is not None else None
        if not origin or origin in ("built-in", "frozen"):
            return f"module {module!r} has no source file to hash"
        with open(origin, "rb") as fh:
            actual = hashlib.sha256(fh.read()).hexdigest()
        if actual != expected:
            return f"{origin} has sha256 {actual}, the allowlist pins {expected}"
        return None


def is_dangerous(qualname: str) -> bool:
    """Whether ``qualname`` is a known gadget or lives in a gadget module."""
    for prefix in DANGEROUS_PREFIXES:
        if qualname == prefix or qualname.startswith(prefix + "."):
            return True
    return False


def _default_allowed(qualname: str) -> bool:
    if qualname in _EXACT:
        return True
    module, _, name = qualname.rpartition(".")
    if not module or not all(_SEGMENT.match(s) for s in qualname.split(".")):
        return False
    if _TORCH_STORAGE.match(qualname):
        return True
    if _CAMEL.match(name):
        return any(qualname.startswith(p) for p in _CLASS_PACKAGES)
    # Cython pickling helpers of the allowed packages restore an instance of a class that is
    # itself checked when the stream imports it
    if name.startswith("__pyx_unpickle_"):
        return any(qualname.startswith(p) for p in (*_CLASS_PACKAGES, "numpy."))
    return module == "numpy" and name in _NUMPY_VALUES


DEFAULT_ALLOWLIST = Allowlist()
