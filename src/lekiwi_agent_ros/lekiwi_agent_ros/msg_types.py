"""Message classes used by the agent, imported in one place and as lean as its memory budget needs.

Nodes import their message classes from here (`from lekiwi_agent_ros.msg_types import Joy`).
Two things keep the one-process agent small (ENVIRONMENT.md measured about 16 MB of RSS):

- `sensor_msgs` classes load from their own modules: the `sensor_msgs.msg` package import
  would load about 30 message modules, CameraInfo among them, whose fixed-size arrays import
  numpy. The package module is made without running its `__init__`; any other name asked of
  it loads the conventional submodule, and failing that runs the real `__init__`.
- `install_lean_imports()`, called by the agent before it imports rclpy, defers numpy (imported
  by `service_msgs` through `rclpy.node` for a `uint8[16]` field), yaml (used only by rclpy's
  parameter string parser) and the rosidl code generator (lark, empy) until something really
  uses them. A deferred module loads itself, fully and transparently, on first attribute use.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import threading
import types
from typing import TYPE_CHECKING, Any

from lekiwi_fleet_msgs.action import Deploy
from lekiwi_fleet_msgs.msg import (
    CommandRoundTrip,
    DeploymentStatus,
    FleetCommand,
    FleetEvent,
    ResourceUsage,
    RobotHeartbeat,
    TelemetryDelta,
    TeleopStatus,
    WebRtcStatus,
)
from lekiwi_fleet_msgs.srv import GetAgentStatus, RequestTelemetrySnapshot

if TYPE_CHECKING:  # at run time these load lazily, through __getattr__ below
    from sensor_msgs.msg import BatteryState, CompressedImage, Image, Joy
    from std_msgs.msg import Header, UInt16

__all__ = [
    'BatteryState',
    'CommandRoundTrip',
    'CompressedImage',
    'Deploy',
    'DeploymentStatus',
    'FleetCommand',
    'FleetEvent',
    'GetAgentStatus',
    'Header',
    'Image',
    'Joy',
    'RequestTelemetrySnapshot',
    'ResourceUsage',
    'RobotHeartbeat',
    'TelemetryDelta',
    'TeleopStatus',
    'UInt16',
    'WebRtcStatus',
    'defer_module',
    'install_lean_imports',
    'message_class',
]

# Classes of other packages that this module hands out lazily, by package.
_LAZY_CLASSES = {
    'BatteryState': 'sensor_msgs.msg',
    'CompressedImage': 'sensor_msgs.msg',
    'Image': 'sensor_msgs.msg',
    'Joy': 'sensor_msgs.msg',
    'Header': 'std_msgs.msg',
    'UInt16': 'std_msgs.msg',
}
# Packages whose __init__ is skipped; their classes load from their own submodules.
_LEAN_PACKAGES = ('sensor_msgs.msg', 'std_msgs.msg')
# Modules deferred by install_lean_imports(); each loads fully on first attribute use.
# importlib.metadata (with zipfile, csv, email): websockets.version imports it at import time
# and uses it only in a development checkout; about 1 MB of RSS (issue 15, agent_footprint).
_DEFERRED_MODULES = ('numpy', 'yaml', 'importlib.metadata')
_CAMEL_BOUNDARY = re.compile(r'(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])')


def __getattr__(name: str) -> Any:
    """Load the sensor_msgs classes on first use, through their own modules."""
    package = _LAZY_CLASSES.get(name)
    if package is None:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    cls = message_class(package, name)
    globals()[name] = cls
    return cls


def message_class(package: str, name: str) -> type:
    """Return class `name` of a generated package such as `sensor_msgs.msg`, importing little."""
    if package in _LEAN_PACKAGES:
        _lean_package(package)
    return getattr(importlib.import_module(package), name)


def _module_name(class_name: str) -> str:
    """Return rosidl's module name for a class: BatteryState -> _battery_state."""
    return '_' + _CAMEL_BOUNDARY.sub('_', class_name).lower()


def _lean_package(name: str, eager: dict[str, str] | None = None) -> types.ModuleType:
    """Make package `name` without running its __init__; names load on first use."""
    existing = sys.modules.get(name)
    if existing is not None:
        return existing
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return importlib.import_module(name)
    module = importlib.util.module_from_spec(spec)
    loader = spec.loader
    lock = threading.RLock()

    def load_attribute(attr: str) -> Any:
        if attr.startswith('__'):
            raise AttributeError(attr)
        with lock:
            if attr in module.__dict__:
                return module.__dict__[attr]
            try:
                value = getattr(importlib.import_module(f'{name}.{_module_name(attr)}'), attr)
            except (ImportError, AttributeError):
                # Not where rosidl puts it: run the package's real __init__ once, in place.
                module.__dict__.pop('__getattr__', None)
                loader.exec_module(module)
                try:
                    return module.__dict__[attr]
                except KeyError:
                    raise AttributeError(f'module {name!r} has no attribute {attr!r}') from None
            module.__dict__[attr] = value
            return value

    module.__getattr__ = load_attribute  # type: ignore[method-assign]
    sys.modules[name] = module
    for attr, source in (eager or {}).items():
        setattr(module, attr, getattr(importlib.import_module(source), attr))
    parent, _, child = name.rpartition('.')
    if parent:
        setattr(sys.modules[parent], child, module)
    return module


class _DeferredModule(types.ModuleType):
    """Stand-in for a module in sys.modules that imports the real one on first attribute use."""

    def __init__(self, name: str, spec: Any) -> None:
        super().__init__(name)
        # Attributes read without meaning to use the module must not trigger the load:
        # __spec__ by every `import name`, __file__ and __loader__ by inspect.getmodule(),
        # which rclpy's logger runs over every module in sys.modules. Not __path__: a
        # submodule import must load the real package first.
        self.__spec__ = spec
        self.__file__ = spec.origin
        self.__loader__ = spec.loader
        self.__dict__['_deferred_lock'] = threading.Lock()
        self.__dict__['_deferred_real'] = None

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._load(), attr)

    def _load(self) -> types.ModuleType:
        # Two threads may touch the module at once; the real import must happen once.
        with self.__dict__['_deferred_lock']:
            real = self.__dict__['_deferred_real']
            if real is None:
                if sys.modules.get(self.__name__) is self:
                    del sys.modules[self.__name__]
                real = importlib.import_module(self.__name__)
                self.__dict__['_deferred_real'] = real
            return real


def defer_module(name: str) -> bool:
    """Put a stand-in for module `name` in sys.modules that loads it on first attribute use.

    Return False (and do nothing) when the module is already imported or does not exist.
    """
    if name in sys.modules:
        return False
    spec = importlib.util.find_spec(name)
    if spec is None:
        return False
    stand_in = _DeferredModule(name, spec)
    sys.modules[name] = stand_in
    parent, _, child = name.rpartition('.')
    if parent:
        # `import a.b; a.b.f()` reads the attribute of the package, not sys.modules.
        setattr(sys.modules[parent], child, stand_in)
    return True


def install_lean_imports() -> list[str]:
    """Defer numpy, yaml, importlib.metadata and the rosidl code generator; return the names.

    Call it before importing rclpy; modules already imported are left alone.
    """
    deferred = [name for name in _DEFERRED_MODULES if defer_module(name)]
    if 'rosidl_generator_py' not in sys.modules:
        # Its __init__ imports the code generator (lark, empy); messages only need this one.
        _lean_package(
            'rosidl_generator_py',
            eager={'import_type_support': 'rosidl_generator_py.import_type_support_impl'},
        )
        deferred.append('rosidl_generator_py.generate_py')
    for package in _LEAN_PACKAGES:
        if package not in sys.modules:
            _lean_package(package)
            deferred.append(package)
    return deferred
